// Fused attention, flash style, f32 throughout. The rows of one kv head are the (q head of its
// group, query) pairs, row = g * T + t, so grouped q heads share every key and value load.
// One block per (tile of warps * ATT_R rows, kv head, key split): keys go in tiles of 32
// through shared memory (K tile, then V tile in the same buffer); lane j scores key j of the
// tile against the warp's ATT_R rows (queries held in shared memory), an online softmax per
// row (running max and sum, rescaled accumulators) keeps memory O(tile), and lane l owns
// output columns l, l + 32, ... (Dv <= 256). With splits > 1 each block covers a range of
// key tiles and writes (max, sum, unnormalised row) to `part`; attention_combine merges them
// (flash decoding: few rows, many keys). Causal rows see keys j <= t + S - T; the additive
// mask [T, S] is f32.
#define ATT_R 2
#define ATT_BK 32
#define ATT_COLS 8
#define ATT_NEG_BIG (-3.4028235e38f)

struct AttnParams {
    u64 hq, t, s, d, dv, group;
    float scale;
    int causal, tokens_first, splits, tiles_per_split, has_mask, dq, dk, dvt, dy;
};
static_assert(sizeof(AttnParams) == 88, "AttnParams must match src/backend/cuda/fused/attention.rs");

__device__ __forceinline__ float att_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float att_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Keys row `row` (of kv head rows g * T + t) may see: [0, lim).
__device__ __forceinline__ u64 att_limit(const AttnParams& p, u64 row, u64 rows) {
    if (row >= rows) return 0;
    if (!p.causal) return p.s;
    long long t = (long long)(row % p.t), lim = t + (long long)p.s - (long long)p.t + 1;
    if (lim < 0) lim = 0;
    if (lim > (long long)p.s) lim = (long long)p.s;
    return (u64)lim;
}

// Output element (global row grow = head * T + t, column c).
__device__ __forceinline__ u64 att_out_index(const AttnParams& p, u64 grow, u64 c) {
    if (!p.tokens_first) return grow * p.dv + c;
    u64 h = grow / p.t, t = grow - h * p.t;
    return (t * p.hq + h) * p.dv + c;
}

extern "C" __global__ void attention(const void* q, const void* k, const void* v, const float* mask, void* y, float* part, AttnParams p) {
    extern __shared__ float smem[];
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const u64 d = p.d, dv = p.dv, S = p.s, T = p.t;
    const u64 kvh = blockIdx.y, rows = p.group * T, row0 = (u64)blockIdx.x * warps * ATT_R;
    const u64 ldk = (d & 1) ? d : d + 1; // odd row stride: lane j reading row j hits bank (j * ldk + c) % 32, all distinct
    float* tile = smem;
    float* qs = smem + ATT_BK * (ldk > dv ? ldk : dv);
    const u64 nrows = (u64)warps * ATT_R;

    for (u64 idx = threadIdx.x; idx < nrows * d; idx += blockDim.x) {
        u64 r = idx / d, c = idx - r * d, row = row0 + r;
        qs[idx] = row < rows ? ld(q, p.dq, (kvh * rows + row) * d + c) : 0.0f;
    }
    u64 blim = 0;
    for (u64 r = 0; r < nrows; ++r) {
        u64 l = att_limit(p, row0 + r, rows);
        blim = l > blim ? l : blim;
    }
    u64 lim[ATT_R], tok[ATT_R];
#pragma unroll
    for (int r = 0; r < ATT_R; ++r) {
        u64 row = row0 + (u64)warp * ATT_R + r;
        lim[r] = att_limit(p, row, rows);
        tok[r] = row % T;
    }
    const u64 kbeg = (u64)blockIdx.z * p.tiles_per_split * ATT_BK;
    u64 kend = kbeg + (u64)p.tiles_per_split * ATT_BK;
    kend = kend < blim ? kend : blim;

    float m[ATT_R], l[ATT_R], acc[ATT_R][ATT_COLS];
#pragma unroll
    for (int r = 0; r < ATT_R; ++r) {
        m[r] = ATT_NEG_BIG;
        l[r] = 0.0f;
#pragma unroll
        for (int cc = 0; cc < ATT_COLS; ++cc) acc[r][cc] = 0.0f;
    }
    const float neg_inf = __int_as_float(0xff800000);
    for (u64 j0 = kbeg; j0 < kend; j0 += ATT_BK) {
        const int nk = (int)(kend - j0 < ATT_BK ? kend - j0 : ATT_BK);
        __syncthreads(); // the previous tile's values (and, first time, the queries) are settled
        for (u64 idx = threadIdx.x; idx < (u64)nk * d; idx += blockDim.x) {
            u64 j = idx / d, c = idx - j * d;
            tile[j * ldk + c] = ld(k, p.dk, (kvh * S + j0 + j) * d + c);
        }
        __syncthreads();
        float sc[ATT_R];
        {
            float dot[ATT_R];
#pragma unroll
            for (int r = 0; r < ATT_R; ++r) dot[r] = 0.0f;
            if (lane < nk) {
                const float* kr = tile + (u64)lane * ldk;
                const float* qr = qs + (u64)warp * ATT_R * d;
                for (u64 c = 0; c < d; ++c) {
                    float kv = kr[c];
#pragma unroll
                    for (int r = 0; r < ATT_R; ++r) dot[r] += qr[r * d + c] * kv;
                }
            }
            u64 j = j0 + lane;
#pragma unroll
            for (int r = 0; r < ATT_R; ++r) {
                bool live = lane < nk && j < lim[r];
                float mk = (live && p.has_mask) ? mask[tok[r] * S + j] : 0.0f;
                sc[r] = live ? dot[r] * p.scale + mk : neg_inf;
            }
        }
        __syncthreads(); // every warp is done with the key tile
        for (u64 idx = threadIdx.x; idx < (u64)nk * dv; idx += blockDim.x) {
            tile[idx] = ld(v, p.dvt, (kvh * S + j0) * dv + idx);
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < ATT_R; ++r) {
            float mn = fmaxf(m[r], att_warp_max(sc[r]));
            float corr = expf(m[r] - mn);
            sc[r] = expf(sc[r] - mn); // hidden keys: exp(-inf) = 0
            l[r] = l[r] * corr + att_warp_sum(sc[r]);
            m[r] = mn;
#pragma unroll
            for (int cc = 0; cc < ATT_COLS; ++cc) acc[r][cc] *= corr;
        }
        for (int j = 0; j < nk; ++j) {
            float pj[ATT_R];
#pragma unroll
            for (int r = 0; r < ATT_R; ++r) pj[r] = __shfl_sync(0xffffffffu, sc[r], j);
            const float* vr = tile + (u64)j * dv;
#pragma unroll
            for (int cc = 0; cc < ATT_COLS; ++cc) {
                u64 c = (u64)lane + 32 * cc;
                if (c < dv) {
                    float vv = vr[c];
#pragma unroll
                    for (int r = 0; r < ATT_R; ++r) acc[r][cc] += pj[r] * vv;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_R; ++r) {
        u64 row = row0 + (u64)warp * ATT_R + r;
        if (row >= rows) continue;
        u64 grow = kvh * rows + row; // = head * T + t
        if (p.splits == 1) {
            float inv = 1.0f / l[r];
#pragma unroll
            for (int cc = 0; cc < ATT_COLS; ++cc) {
                u64 c = (u64)lane + 32 * cc;
                if (c < dv) st(y, p.dy, att_out_index(p, grow, c), acc[r][cc] * inv);
            }
        } else {
            float* pr = part + ((u64)blockIdx.z * p.hq * T + grow) * (dv + 2);
            if (lane == 0) {
                pr[0] = m[r];
                pr[1] = l[r];
            }
#pragma unroll
            for (int cc = 0; cc < ATT_COLS; ++cc) {
                u64 c = (u64)lane + 32 * cc;
                if (c < dv) pr[2 + c] = acc[r][cc];
            }
        }
    }
}

// Merges the key splits of `attention`: one thread per output element.
extern "C" __global__ void attention_combine(const float* part, void* y, AttnParams p) {
    u64 i = global_index(), grows = p.hq * p.t;
    if (i >= grows * p.dv) return;
    u64 grow = i / p.dv, c = i - grow * p.dv, stride = grows * (p.dv + 2);
    const float* pr = part + grow * (p.dv + 2);
    float mx = ATT_NEG_BIG;
    for (int s = 0; s < p.splits; ++s) mx = fmaxf(mx, pr[s * stride]);
    float l = 0.0f, o = 0.0f;
    for (int s = 0; s < p.splits; ++s) {
        float w = expf(pr[s * stride] - mx);
        l += pr[s * stride + 1] * w;
        o += pr[s * stride + 2 + c] * w;
    }
    st(y, p.dy, att_out_index(p, grow, c), o / l);
}
