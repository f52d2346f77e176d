// Batched matmul with f32 accumulation, 16x16 output tiles through shared memory (the plain
// kernel; cuBLAS takes over dense matmuls later). Output batch z reads a's batch z / a_group
// (stride a_stride, 0 when shared) and b's batch z / b_group; b is [N, K] when trans_b.
extern "C" __global__ void matmul(const void* a, const void* b, void* y, u64 m, u64 n, u64 k, u64 a_group, u64 a_stride, u64 b_group, u64 b_stride, int trans_b, int da, int db, int dy) {
    __shared__ float ta[16][17];
    __shared__ float tb[16][17];
    u64 z = blockIdx.z;
    u64 row = (u64)blockIdx.y * 16 + threadIdx.y, col = (u64)blockIdx.x * 16 + threadIdx.x;
    u64 ao = (z / a_group) * a_stride, bo = (z / b_group) * b_stride;
    float acc = 0.0f;
    for (u64 k0 = 0; k0 < k; k0 += 16) {
        u64 ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
        ta[threadIdx.y][threadIdx.x] = (row < m && ka < k) ? ld(a, da, ao + row * k + ka) : 0.0f;
        float vb = 0.0f;
        if (col < n && kb < k) vb = trans_b ? ld(b, db, bo + col * k + kb) : ld(b, db, bo + kb * n + col);
        tb[threadIdx.y][threadIdx.x] = vb;
        __syncthreads();
        for (int kk = 0; kk < 16; ++kk) acc += ta[threadIdx.y][kk] * tb[kk][threadIdx.x];
        __syncthreads();
    }
    if (row < m && col < n) st(y, dy, z * m * n + row * n + col, acc);
}
