// Decode GEMV / small-batch GEMM: y[m, n] = x[m, k] @ w[n, k]^T for m <= GEMV_M rows of
// activations and 16-bit weights (bf16 or f16, row-major [n, k], k a multiple of 8, 16-byte
// aligned, as x). Batch-1 decode reads every weight once, so this kernel is bound by HBM bandwidth:
// each lane streams 16-byte vectors (8 weights) with GEMV_U loads in flight, L1-bypassing
// (the weights are read once), and keeps the m activation rows in shared memory as f32 (or
// reads them through L1 when they do not fit).
//
// A block is 8 warps. With ks K splits per row (1, 2, 4 or 8; the host picks more splits when
// n is too narrow to fill the GPU), warp w computes row blockIdx.x * (8 / ks) + w / ks over
// K slice w % ks; slices are summed in shared memory in slice order. f32 accumulation.
#define GEMV_M 8
#define GEMV_U 4

// x[i .. i + 8] as f32 (i a multiple of 8, x 16-byte aligned), x's dtype code TX known at
// compile time: vector loads, no per-element switch.
template <int TX>
__device__ __forceinline__ void gemv_x8(const void* x, u64 i, float* out) {
    if (TX == 0) {
        const float4* p = (const float4*)((const float*)x + i);
        float4 a = p[0], b = p[1];
        out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
        out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
    } else {
        unpack_half8(*(const uint4*)((const u16*)x + i), TX, out);
    }
}

template <bool STAGE, int TX>
__device__ __forceinline__ void gemv_body(const void* x, const u16* w, void* y, u32 m, u32 n, u32 k, u32 ks, int dx, int dw, int dy) {
    extern __shared__ float gemv_smem[]; // STAGE: x as f32 [m, k]; then ks partial sums per (warp, row)
    __shared__ float part[8][GEMV_M];
    const u32 warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    const u32 rows_per_block = 8u / ks;
    const u32 row = blockIdx.x * rows_per_block + warp / ks, slice = warp % ks;
    if (STAGE) {
        for (u32 i = threadIdx.x; i < m * k; i += blockDim.x) gemv_smem[i] = ld(x, dx, i);
        __syncthreads();
    }
    float acc[GEMV_M];
#pragma unroll
    for (int r = 0; r < GEMV_M; ++r) acc[r] = 0.0f;
    const u32 chunks = k >> 3, per = (chunks + ks - 1) / ks;
    const u32 c0 = slice * per, c1 = min(chunks, c0 + per);
    if (row < n) {
        const u16* wr = w + (u64)row * k;
        for (u32 c = c0 + lane; c < c1; c += 32u * GEMV_U) {
            uint4 v[GEMV_U];
#pragma unroll
            for (int u = 0; u < GEMV_U; ++u) {
                u32 idx = c + 32u * u;
                v[u] = idx < c1 ? ld_stream16(wr + (u64)idx * 8) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < GEMV_U; ++u) {
                u32 idx = c + 32u * u;
                if (idx >= c1) break;
                float wf[8];
                unpack_half8(v[u], dw, wf);
                const u32 k0 = idx * 8u;
#pragma unroll
                for (int r = 0; r < GEMV_M; ++r) {
                    if ((u32)r >= m) break;
                    float s = acc[r];
                    if (STAGE) {
                        const float4* xr = (const float4*)(gemv_smem + (u64)r * k + k0);
                        float4 a = xr[0], b = xr[1];
                        s += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w;
                        s += wf[4] * b.x + wf[5] * b.y + wf[6] * b.z + wf[7] * b.w;
                    } else {
                        float xv[8];
                        gemv_x8<TX>(x, (u64)r * k + k0, xv);
#pragma unroll
                        for (int e = 0; e < 8; ++e) s += wf[e] * xv[e];
                    }
                    acc[r] = s;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_M; ++r) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        acc[r] = v;
    }
    if (ks == 1) {
        if (lane == 0 && row < n) {
#pragma unroll
            for (int r = 0; r < GEMV_M; ++r)
                if ((u32)r < m) st(y, dy, (u64)r * n + row, acc[r]);
        }
        return;
    }
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < GEMV_M; ++r) part[warp][r] = acc[r];
    }
    __syncthreads();
    // Thread t < rows_per_block * m sums the slices of (row t / m, activation row t % m).
    const u32 t = threadIdx.x;
    if (t >= rows_per_block * m) return;
    const u32 lr = t / m, r = t - lr * m, orow = blockIdx.x * rows_per_block + lr;
    if (orow >= n) return;
    float s = 0.0f;
    for (u32 sl = 0; sl < ks; ++sl) s += part[lr * ks + sl][r];
    st(y, dy, (u64)r * n + orow, s);
}

extern "C" __global__ void gemv(const void* x, const u16* w, void* y, u32 m, u32 n, u32 k, u32 ks, int dx, int dw, int dy) {
    gemv_body<true, 0>(x, w, y, m, n, k, ks, dx, dw, dy);
}

extern "C" __global__ void gemv_unstaged(const void* x, const u16* w, void* y, u32 m, u32 n, u32 k, u32 ks, int dx, int dw, int dy) {
    if (dx == 0) gemv_body<false, 0>(x, w, y, m, n, k, ks, dx, dw, dy);
    else if (dx == 1) gemv_body<false, 1>(x, w, y, m, n, k, ks, dx, dw, dy);
    else gemv_body<false, 2>(x, w, y, m, n, k, ks, dx, dw, dy);
}
