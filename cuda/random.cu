// Seeded random numbers (src/graph/random.rs defines them; the CPU oracle and
// shaders/random.wgsl compute the same): element i = offset + scale * (2u - 1), u = 24 hash
// bits of (seed, i).
__device__ __forceinline__ u32 pcg(u32 v) {
    u32 s = v * 747796405u + 2891336453u;
    u32 w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

extern "C" __global__ void random(void* y, u64 n, u64 seed, float offset, float scale, int dy) {
    u64 i = global_index();
    if (i >= n) return;
    u32 r = pcg(pcg((u32)i ^ (u32)seed) ^ pcg((u32)(i >> 32) ^ (u32)(seed >> 32))) >> 8u;
    float u = (float)r * (1.0f / 16777216.0f);
    st(y, dy, i, __fadd_rn(offset, __fmul_rn(scale, 2.0f * u - 1.0f)));
}
