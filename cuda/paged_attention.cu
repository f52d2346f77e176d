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

// Tuned variant for 16-bit caches (k_new, v_new and both pools one dtype, bf16 or f16), D = Dv
// = 8 x L with L = 8, 16 or 32 lanes per key row, and at most PA_G q heads per kv head. One
// block of 4 warps per (token, kv head): the group's q heads share every key and value load.
// Each group of L lanes takes one key at a time (keys j = slot, slot + 32 / L * 4, ...): lane i
// loads 16 bytes (8 elements) of the key row, the partial dots of every q head are summed over
// the L lanes by shuffles, each lane group keeps an online softmax per head and 8 output columns
// per head, and the 128 / L lane groups are merged through shared memory at the end.
#define PA_G 8

template <int L>
__device__ __forceinline__ void paged_gqa(const void* q, const u16* k_new, const u16* v_new, const u16* k_pool, const u16* v_pool, const int* index, void* y, u64 hq, u64 hkv, u64 d, u64 bs, u64 cols, float scale, int dq, int dt, int dy) {
    extern __shared__ float pa_smem[]; // q [G][d]; then per lane group: m[G], l[G], acc[G][d]
    constexpr int GROUPS = 128 / L;
    const u64 t = blockIdx.x, kvh = blockIdx.y, g = hq / hkv;
    const int tid = threadIdx.x, grp = tid / L, li = tid % L;
    const u64 past = (u64)index[t * cols], start = (u64)index[t * cols + 1];
    const u64 total = past + t - start + 1;
    float* qs = pa_smem;
    for (u64 i = tid; i < g * d; i += blockDim.x) qs[i] = ld(q, dq, (t * hq + kvh * g) * d + i);
    __syncthreads();
    float qv[PA_G][8];
#pragma unroll
    for (int h = 0; h < PA_G; ++h)
#pragma unroll
        for (int e = 0; e < 8; ++e) qv[h][e] = (u64)h < g ? qs[h * d + li * 8 + e] * scale : 0.0f;
    float m[PA_G], l[PA_G], acc[PA_G][8];
#pragma unroll
    for (int h = 0; h < PA_G; ++h) {
        m[h] = -3.4028235e38f;
        l[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] = 0.0f;
    }
    // Every lane of a warp runs the same iterations (the shuffles need the whole warp); a lane
    // group past the last key computes on zeros and keeps nothing.
    for (u64 j0 = 0; j0 < total; j0 += GROUPS) {
        const u64 j = j0 + grp;
        const bool live = j < total;
        uint4 kw = make_uint4(0u, 0u, 0u, 0u), vw = make_uint4(0u, 0u, 0u, 0u);
        if (live) {
            const u64 row = pa_key_row(index, cols, t, j, past, start, bs);
            const u64 off = (row * hkv + kvh) * d + li * 8;
            const bool cached = j < past;
            kw = *(const uint4*)((cached ? k_pool : k_new) + off);
            vw = *(const uint4*)((cached ? v_pool : v_new) + off);
        }
        float kf[8], vf[8];
        unpack_half8(kw, dt, kf);
        unpack_half8(vw, dt, vf);
#pragma unroll
        for (int h = 0; h < PA_G; ++h) {
            if ((u64)h >= g) break;
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; ++e) s += qv[h][e] * kf[e];
#pragma unroll
            for (int o = L / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (!live) continue;
            const float mn = fmaxf(m[h], s), corr = expf(m[h] - mn), p = expf(s - mn);
            l[h] = l[h] * corr + p;
            m[h] = mn;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[h][e] = acc[h][e] * corr + p * vf[e];
        }
    }
    // Merge the lane groups: each writes (m, l, acc) per head, then thread c sums column c.
    float* part = pa_smem + g * d;
    const u64 stride = g * (d + 2);
#pragma unroll
    for (int h = 0; h < PA_G; ++h) {
        if ((u64)h >= g) break;
        float* pr = part + grp * stride + h * (d + 2);
        if (li == 0) {
            pr[0] = m[h];
            pr[1] = l[h];
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) pr[2 + li * 8 + e] = acc[h][e];
    }
    __syncthreads();
    for (u64 i = tid; i < g * d; i += blockDim.x) {
        const u64 h = i / d, c = i - h * d;
        float mx = -3.4028235e38f;
        for (int s = 0; s < GROUPS; ++s) mx = fmaxf(mx, part[s * stride + h * (d + 2)]);
        float ls = 0.0f, o = 0.0f;
        for (int s = 0; s < GROUPS; ++s) {
            const float* pr = part + s * stride + h * (d + 2);
            const float w = expf(pr[0] - mx);
            ls += pr[1] * w;
            o += pr[2 + c] * w;
        }
        st(y, dy, (t * hq + kvh * g + h) * d + c, o / ls);
    }
}

#define PA_ENTRY(name, l)                                                                                                \
    extern "C" __global__ void __launch_bounds__(128) name(const void* q, const u16* k_new, const u16* v_new,            \
                                                           const u16* k_pool, const u16* v_pool, const int* index, void* y, \
                                                           u64 hq, u64 hkv, u64 d, u64 bs, u64 cols, float scale, int dq, \
                                                           int dt, int dy) {                                              \
        paged_gqa<l>(q, k_new, v_new, k_pool, v_pool, index, y, hq, hkv, d, bs, cols, scale, dq, dt, dy);                 \
    }
PA_ENTRY(paged_attention_gqa8, 8)
PA_ENTRY(paged_attention_gqa16, 16)
PA_ENTRY(paged_attention_gqa32, 32)
