// RMSNorm over rows, of x = a or, with has_b, of the residual sum x = a + b rounded to a's
// dtype (as the unfused graph stores it); with has_side that sum is also written to `side`.
// out = x / sqrt(mean(x^2) + eps) * w, the mean square accumulated in f64 as the CPU oracle
// does. One block of 256 threads per row of C elements; a and b share dtype da.
__device__ __forceinline__ float rms_round(int dt, float v) {
    if (dt == 2) return bf16_to_f32(f32_to_bf16(v));
    if (dt == 1) return f16_to_f32(f32_to_f16(v));
    return v;
}

extern "C" __global__ void rms_norm(const void* a, const void* b, const void* w, void* y, void* side, u64 rows, u64 c, float eps, int has_b, int has_side, int da, int dw, int dy) {
    __shared__ double red[256];
    u64 row = (u64)blockIdx.x + (u64)blockIdx.y * gridDim.x;
    if (row >= rows) return;
    u64 base = row * c;
    double ss = 0.0;
    for (u64 j = threadIdx.x; j < c; j += blockDim.x) {
        float x = ld(a, da, base + j);
        if (has_b) x = rms_round(da, x + ld(b, da, base + j));
        if (has_side) st(side, da, base + j, x);
        ss += (double)x * (double)x;
    }
    double inv = 1.0 / sqrt(block_sum(ss, red) / (double)c + (double)eps);
    for (u64 j = threadIdx.x; j < c; j += blockDim.x) {
        // This thread wrote side[base + j] above: reading it back stays right if side aliases a or b.
        float x;
        if (has_side) x = ld(side, da, base + j);
        else {
            x = ld(a, da, base + j);
            if (has_b) x = rms_round(da, x + ld(b, da, base + j));
        }
        st(y, dy, base + j, (float)((double)x * inv) * ld(w, dw, j));
    }
}
