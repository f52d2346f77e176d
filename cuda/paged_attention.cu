// Attention over a paged KV cache (Op::PagedAttention): one block of 256 threads per
// (token, query head); keys in tiles of 256, one key per thread (a cached key's slot found
// through the token's block table, a new key read from this batch's rows), an online
// softmax over the tiles; thread c < Dv owns output column c. D and Dv at most 256.
// index (i32) [T, 2 + blocks]: keys cached for the token's sequence, the row of its
// sequence's first new token, then the sequence's block table.
// Row of key j for token t: a pool slot (cached keys) or a row of the batch (new keys).
__device__ __forceinline__ u64 pa_key_row(const int* index, u64 cols, u64 t, u64 j, u64 past, u64 start, u64 bs) {
    if (j < past) return (u64)index[t * cols + 2 + j / bs] * bs + j % bs;
    return start + (j - past);
}

extern "C" __global__ void paged_attention(const void* q, const void* k_new, const void* v_new, const void* k_pool, const void* v_pool, const int* index, void* y, u64 t_n, u64 hq, u64 hkv, u64 d, u64 dv, u64 bs, u64 cols, float scale, int dq, int dk, int dv_new, int dkp, int dvp, int dy) {
    __shared__ float qrow[256];
    __shared__ float probs[256];
    __shared__ float red[256];
    u64 blk = (u64)blockIdx.x + (u64)blockIdx.y * gridDim.x;
    if (blk >= t_n * hq) return;
    u64 t = blk / hq, h = blk % hq, g = h / (hq / hkv);
    u64 past = (u64)index[t * cols], start = (u64)index[t * cols + 1];
    u64 total = past + t - start + 1;
    if (threadIdx.x < d) qrow[threadIdx.x] = ld(q, dq, (t * hq + h) * d + threadIdx.x);
    __syncthreads();
    float m = -3.4028235e38f, l = 0.0f, acc = 0.0f;
    for (u64 j0 = 0; j0 < total; j0 += blockDim.x) {
        u64 j = j0 + threadIdx.x;
        bool live = j < total;
        float sc = -3.4028235e38f;
        if (live) {
            u64 kb = (pa_key_row(index, cols, t, j, past, start, bs) * hkv + g) * d;
            float dot = 0.0f;
            if (j < past) {
                for (u64 c = 0; c < d; ++c) dot += ld(k_pool, dkp, kb + c) * qrow[c];
            } else {
                for (u64 c = 0; c < d; ++c) dot += ld(k_new, dk, kb + c) * qrow[c];
            }
            sc = dot * scale;
        }
        float m_new = fmaxf(m, block_max(sc, red));
        float corr = expf(m - m_new);
        float p = live ? expf(sc - m_new) : 0.0f;
        probs[threadIdx.x] = p;
        l = l * corr + block_sum(p, red);
        if (threadIdx.x < dv) {
            float a = acc * corr;
            u64 n = total - j0 < blockDim.x ? total - j0 : blockDim.x;
            for (u64 jj = 0; jj < n; ++jj) {
                u64 jg = j0 + jj;
                u64 vb = (pa_key_row(index, cols, t, jg, past, start, bs) * hkv + g) * dv + threadIdx.x;
                float v = jg < past ? ld(v_pool, dvp, vb) : ld(v_new, dv_new, vb);
                a += probs[jj] * v;
            }
            acc = a;
        }
        m = m_new;
        __syncthreads();
    }
    if (threadIdx.x < dv) st(y, dy, (t * hq + h) * dv + threadIdx.x, acc / l);
}
