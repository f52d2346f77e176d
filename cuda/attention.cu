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

// ---------------------------------------------------------------------------------------------
// Flash attention on tensor cores (FlashAttention-2 style; sm_80+ `mma.sync` m16n8k16, 16-bit
// inputs, f32 accumulation), for q, k, v all bf16 or all f16 with D, Dv multiples of 8 padded to
// DP (64, 80 (the vision tower's 72) or 128) and at least one warp tile (16 rows) per kv head.
// Four warps of 16 rows (the (q head of the group, query) rows of one kv head, as above); keys in tiles of 64 through
// shared memory, K row-major and V transposed (so every B fragment is one 32-bit load; rows
// padded by 8 halves, which spreads a fragment's 32 loads over all 32 banks). Q fragments stay in
// registers; S = Q K^T (16 x 64 per warp) goes through an online softmax in base 2 in registers
// and is reused, rounded to the input dtype, as the A operand of P V. Splits and the causal /
// additive masks behave as in `attention`, and partial rows (max in natural-log units) merge
// through `attention_combine`.
#define FA_BN 64
#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f

template <bool F16, int DP>
__device__ __forceinline__ void attention_tc(const u16* q, const u16* k, const u16* v, const float* mask, void* y, float* part, AttnParams p) {
    constexpr int KS = DP / 16, NT = DP / 8, LDK = DP + 8, LDV = FA_BN + 8;
    // K tile, V^T tile; at the end the block's output rows (f32, stride DP + 1) and (max, sum).
    __shared__ __align__(16) u16 tiles[FA_BN * LDK + DP * LDV];
    static_assert((64 * (DP + 1) + 128) * 4 <= (FA_BN * LDK + DP * LDV) * 2, "output rows fit the tiles");
    u16* ks = tiles;
    u16* vt = tiles + FA_BN * LDK;
    __shared__ u32 blim_s;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const u64 d = p.d, dv = p.dv, S = p.s;
    const u64 kvh = blockIdx.y, rows = p.group * p.t;
    const u64 ra = (u64)blockIdx.x * 64 + warp * 16 + g, rb = ra + 8;

    if (tid == 0) blim_s = 0;
    u32 qa[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; ++kk)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            u64 r = (i & 1) ? rb : ra, c = (u64)kk * 16 + tig * 2 + ((i & 2) ? 8 : 0);
            qa[kk][i] = (r < rows && c < d) ? *(const u32*)(q + (kvh * rows + r) * d + c) : 0u;
        }
    const u64 lim_a = att_limit(p, ra, rows), lim_b = att_limit(p, rb, rows);
    const u64 tok_a = ra % p.t, tok_b = rb % p.t;
    __syncthreads();
    atomicMax(&blim_s, (u32)(lim_a > lim_b ? lim_a : lim_b));
    __syncthreads();
    const u64 kbeg = (u64)blockIdx.z * p.tiles_per_split * FA_BN;
    u64 kend = kbeg + (u64)p.tiles_per_split * FA_BN;
    kend = kend < (u64)blim_s ? kend : (u64)blim_s;

    const float sl2 = p.scale * FA_LOG2E, neg_inf = __int_as_float(0xff800000);
    float m_a = ATT_NEG_BIG, m_b = ATT_NEG_BIG, l_a = 0.0f, l_b = 0.0f;
    float o[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;

    for (u64 j0 = kbeg; j0 < kend; j0 += FA_BN) {
        __syncthreads(); // every warp is done with the previous tile
        // K tile [64][DP] and V^T tile [DP][64], 16-byte global loads; zeros past S, D, Dv.
        for (int idx = tid; idx < FA_BN * (DP / 8); idx += blockDim.x) {
            const int j = idx / (DP / 8), c = (idx - j * (DP / 8)) * 8;
            uint4 kv = make_uint4(0u, 0u, 0u, 0u), vv = make_uint4(0u, 0u, 0u, 0u);
            if (j0 + j < S) {
                if ((u64)c < d) kv = *(const uint4*)(k + (kvh * S + j0 + j) * d + c);
                if ((u64)c < dv) vv = *(const uint4*)(v + (kvh * S + j0 + j) * dv + c);
            }
            *(uint4*)(ks + j * LDK + c) = kv;
            const u32 w[4] = {vv.x, vv.y, vv.z, vv.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                vt[(c + 2 * e) * LDV + j] = (u16)(w[e] & 0xffffu);
                vt[(c + 2 * e + 1) * LDV + j] = (u16)(w[e] >> 16);
            }
        }
        __syncthreads();

        float sc[FA_BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; ++kk)
#pragma unroll
            for (int nt = 0; nt < FA_BN / 8; ++nt) {
                const u16* kr = ks + (nt * 8 + g) * LDK + kk * 16 + tig * 2;
                mma_16816<F16>(sc[nt], qa[kk], kr);
            }
        // Scale (base 2), hide keys past the split, the row's limit or S, add the mask.
        float mx_a = neg_inf, mx_b = neg_inf;
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const u64 j = j0 + nt * 8 + tig * 2 + (e & 1);
                const bool top = e < 2;
                const bool live = j < kend && j < (top ? lim_a : lim_b);
                float mk = 0.0f;
                if (live && p.has_mask) mk = mask[(top ? tok_a : tok_b) * S + j] * FA_LOG2E;
                const float s = live ? sc[nt][e] * sl2 + mk : neg_inf;
                sc[nt][e] = s;
                if (top) mx_a = fmaxf(mx_a, s);
                else mx_b = fmaxf(mx_b, s);
            }
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, off));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, off));
        }
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        const float corr_a = exp2f(m_a - mn_a), corr_b = exp2f(m_b - mn_b);
        m_a = mn_a;
        m_b = mn_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int nt = 0; nt < FA_BN / 8; ++nt) {
            sc[nt][0] = exp2f(sc[nt][0] - mn_a); // hidden keys: exp2(-inf) = 0
            sc[nt][1] = exp2f(sc[nt][1] - mn_a);
            sc[nt][2] = exp2f(sc[nt][2] - mn_b);
            sc[nt][3] = exp2f(sc[nt][3] - mn_b);
            sum_a += sc[nt][0] + sc[nt][1];
            sum_b += sc[nt][2] + sc[nt][3];
        }
        l_a = l_a * corr_a + sum_a; // this thread's columns; the quad is summed at the end
        l_b = l_b * corr_b + sum_b;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            o[nt][0] *= corr_a;
            o[nt][1] *= corr_a;
            o[nt][2] *= corr_b;
            o[nt][3] *= corr_b;
        }
        // O += P V: the S accumulators of key tiles 2kk, 2kk + 1 are P's A fragment.
#pragma unroll
        for (int kk = 0; kk < FA_BN / 16; ++kk) {
            const u32 pa[4] = {pack_half2<F16>(sc[2 * kk][0], sc[2 * kk][1]), pack_half2<F16>(sc[2 * kk][2], sc[2 * kk][3]),
                               pack_half2<F16>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]), pack_half2<F16>(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const u16* vr = vt + (nt * 8 + g) * LDV + kk * 16 + tig * 2;
                mma_16816<F16>(o[nt], pa, vr);
            }
        }
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l_a += __shfl_xor_sync(0xffffffffu, l_a, off);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, off);
    }
    // Rows go through shared memory, so the stores below are coalesced (and written once).
    __syncthreads(); // every warp is done with the tiles
    float* ob = (float*)tiles;
    float* ml = ob + 64 * (DP + 1);
    const bool split = p.splits > 1;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int lr = warp * 16 + g + 8 * half;
        const float l = half ? l_b : l_a, inv = split ? 1.0f : 1.0f / l;
        if (tig == 0) {
            ml[2 * lr] = (half ? m_b : m_a) * FA_LN2;
            ml[2 * lr + 1] = l;
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            ob[lr * (DP + 1) + nt * 8 + tig * 2] = o[nt][2 * half] * inv;
            ob[lr * (DP + 1) + nt * 8 + tig * 2 + 1] = o[nt][2 * half + 1] * inv;
        }
    }
    __syncthreads();
    for (u64 idx = tid; idx < 64 * dv; idx += blockDim.x) {
        const u64 lr = idx / dv, c = idx - lr * dv, row = (u64)blockIdx.x * 64 + lr;
        if (row >= rows) continue;
        const u64 grow = kvh * rows + row; // = head * T + t
        const float val = ob[lr * (DP + 1) + c];
        if (!split) {
            st(y, p.dy, att_out_index(p, grow, c), val);
        } else {
            float* pr = part + ((u64)blockIdx.z * p.hq * p.t + grow) * (dv + 2);
            if (c == 0) {
                pr[0] = ml[2 * lr];
                pr[1] = ml[2 * lr + 1];
            }
            pr[2 + c] = val;
        }
    }
}

#define FA_ENTRY(name, f16, dp)                                                                                          \
    extern "C" __global__ void __launch_bounds__(128) name(const u16* q, const u16* k, const u16* v, const float* mask, \
                                                           void* y, float* part, AttnParams p) {                        \
        attention_tc<f16, dp>(q, k, v, mask, y, part, p);                                                               \
    }
FA_ENTRY(attention_tc_bf16_64, false, 64)
FA_ENTRY(attention_tc_bf16_80, false, 80)
FA_ENTRY(attention_tc_bf16_128, false, 128)
FA_ENTRY(attention_tc_f16_64, true, 64)
FA_ENTRY(attention_tc_f16_80, true, 80)
FA_ENTRY(attention_tc_f16_128, true, 128)
