// Indices (i32) of the k largest values of each row of C, largest first, ties to the lower
// index (argmax is k = 1). One block of 256 threads per row; k rounds, each a block
// reduction for the best element ranked after the previous pick.
__device__ __forceinline__ bool ranks_before(float va, u32 ia, float vb, u32 ib) {
    return va > vb || (va == vb && ia < ib);
}

extern "C" __global__ void topk(const void* x, int* y, u64 rows, u64 c, u64 k, int dx) {
    __shared__ float sv[256];
    __shared__ u32 si[256];
    u64 row = (u64)blockIdx.x + (u64)blockIdx.y * gridDim.x;
    if (row >= rows) return;
    u64 base = row * c;
    float pv = 0.0f;
    u32 pi = 0xffffffffu;
    for (u64 r = 0; r < k; ++r) {
        float bv = 0.0f;
        u32 bi = 0xffffffffu;
        for (u64 j = threadIdx.x; j < c; j += blockDim.x) {
            float v = ld(x, dx, base + j);
            bool eligible = pi == 0xffffffffu || ranks_before(pv, pi, v, (u32)j);
            if (eligible && (bi == 0xffffffffu || ranks_before(v, (u32)j, bv, bi))) { bv = v; bi = (u32)j; }
        }
        sv[threadIdx.x] = bv;
        si[threadIdx.x] = bi;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) {
                u32 oi = si[threadIdx.x + s];
                float ov = sv[threadIdx.x + s];
                if (oi != 0xffffffffu && (si[threadIdx.x] == 0xffffffffu || ranks_before(ov, oi, sv[threadIdx.x], si[threadIdx.x]))) {
                    sv[threadIdx.x] = ov;
                    si[threadIdx.x] = oi;
                }
            }
            __syncthreads();
        }
        pv = sv[0];
        pi = si[0];
        if (threadIdx.x == 0) y[row * k + r] = (int)pi;
        __syncthreads();
    }
}
