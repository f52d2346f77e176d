// Grouped expert GEMMs of the fused MoE over weight-only quantized experts (Op::QMoe), as
// moe.cu's (same plan, route and output rows; moe.cu's moe_combine finishes), each weight
// decoded from its code word and f16 group scale as it is read: no full-precision weight is
// written. Stacks are [E, out, in]: codes [E, rows, K / PER] u32 (PER = 32 / bits codes each),
// scales [E, rows, K / group] (f16; f32 for FP8; fmt is the prelude's format id); gate_up's 2N rows are the gate rows then the up rows.
//
// qmoe_gate_up / qmoe_down (many pairs): one block of 16 x 16 threads per (tile of BM sorted
// rows of one expert, BN output columns), K in steps of BK through shared memory, the weight
// tile decoded into shared memory.
// qmoe_gate_up_vec / qmoe_down_vec (few pairs, decode): one routed pair per block row (grid y),
// a warp per output column (8 per block), its lanes taking 16 bytes of codes (4 words) at a time
// when rows are a multiple of 4 words, each word decoded once, then a shuffle reduction.
#define QM_BM 16u
#define QM_BN 64u
#define QM_BK 16u
#define QM_SENT 0xffffffffu

// Weight (row, kk) of a stack whose rows hold kdim inputs.
template <int F>
__device__ __forceinline__ float qweight(const u32* codes, const void* scales, u64 row, u32 kdim, u32 group, u32 kk) {
    const u32 PER = QFmt<F>::PER;
    u32 word = codes[row * (kdim / PER) + kk / PER];
    return qcode<F>(word, (int)(kk % PER)) * qscale<F>(scales, row * (kdim / group) + kk / group);
}

// The tiles' shared memory, declared by each kernel once for all its format instantiations
// (down has no up half: w2 aliases w1 there, unused).
struct QmTiles {
    float (*xs)[QM_BK + 1];
    float (*w1)[QM_BN + 1];
    float (*w2)[QM_BN + 1];
};

template <bool TWO, int F>
__device__ __forceinline__ void qgrouped(const void* a, const u32* codes, const void* scales, const u32* plan, void* out, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int da, int dt, QmTiles t) {
    float (*xs)[QM_BK + 1] = t.xs;
    float (*w1)[QM_BN + 1] = t.w1;
    float (*w2)[QM_BN + 1] = t.w2;
    u32 tile = blockIdx.x;
    if (tile >= plan[0]) return;
    u32 tx = threadIdx.x, ty = threadIdx.y, li = ty * 16u + tx;
    u64 ex = plan[1u + tile];
    u64 col0 = (u64)blockIdx.y * QM_BN;
    u64 q = (u64)tile * QM_BM + ty;
    u32 pair = plan[1ull + mt + q];
    u64 arow = TWO ? (u64)(pair / topk) : q;
    u64 rows = TWO ? 2ull * n : (u64)n;
    float acc1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float acc2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (u32 k0 = 0; k0 < kdim; k0 += QM_BK) {
        xs[ty][tx] = (pair != QM_SENT && k0 + tx < kdim) ? ld(a, da, arow * kdim + k0 + tx) : 0.0f;
        for (u32 r = 0; r < 4u; ++r) {
            // Consecutive threads walk one stored row's inputs.
            u32 idx = li + r * 256u, bk = idx % QM_BK, bn = idx / QM_BK;
            u64 c = col0 + bn;
            u32 kk = k0 + bk;
            float g = 0.0f, u = 0.0f;
            if (c < n && kk < kdim) {
                g = qweight<F>(codes, scales, ex * rows + c, kdim, group, kk);
                if (TWO) u = qweight<F>(codes, scales, ex * rows + n + c, kdim, group, kk);
            }
            w1[bk][bn] = g;
            if (TWO) w2[bk][bn] = u;
        }
        __syncthreads();
        for (u32 kk = 0; kk < QM_BK; ++kk) {
            float v = xs[ty][kk];
            for (u32 j = 0; j < 4u; ++j) {
                acc1[j] += v * w1[kk][tx + 16u * j];
                if (TWO) acc2[j] += v * w2[kk][tx + 16u * j];
            }
        }
        __syncthreads();
    }
    if (pair == QM_SENT) return;
    for (u32 j = 0; j < 4u; ++j) {
        u64 c = col0 + tx + 16u * j;
        if (c >= n) continue;
        if (TWO) st(out, dt, q * n + c, swiglu_rounded(dt, acc1[j], acc2[j]));
        else st(out, dt, (u64)pair * n + c, acc1[j]);
    }
}

extern "C" __global__ void qmoe_gate_up(const void* x, const u32* codes, const void* scales, const u32* plan, void* act, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int fmt, int da, int dt) {
    __shared__ float xs[QM_BM][QM_BK + 1];
    __shared__ float w1[QM_BK][QM_BN + 1];
    __shared__ float w2[QM_BK][QM_BN + 1];
    QmTiles t = {xs, w1, w2};
    if (fmt == 8) qgrouped<true, 8>(x, codes, scales, plan, act, kdim, n, topk, mt, group, da, dt, t);
    else if (fmt == QF_FP8) qgrouped<true, QF_FP8>(x, codes, scales, plan, act, kdim, n, topk, mt, group, da, dt, t);
    else qgrouped<true, 4>(x, codes, scales, plan, act, kdim, n, topk, mt, group, da, dt, t);
}

extern "C" __global__ void qmoe_down(const void* act, const u32* codes, const void* scales, const u32* plan, void* y, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int fmt, int da, int dt) {
    __shared__ float xs[QM_BM][QM_BK + 1];
    __shared__ float w1[QM_BK][QM_BN + 1];
    QmTiles t = {xs, w1, w1};
    if (fmt == 8) qgrouped<false, 8>(act, codes, scales, plan, y, kdim, n, topk, mt, group, da, dt, t);
    else if (fmt == QF_FP8) qgrouped<false, QF_FP8>(act, codes, scales, plan, y, kdim, n, topk, mt, group, da, dt, t);
    else qgrouped<false, 4>(act, codes, scales, plan, y, kdim, n, topk, mt, group, da, dt, t);
}

// One lane's share of row `row` . a's row `arow`: words w0, w0 + 32 * step, ... of the row.
template <int F>
__device__ __forceinline__ float qrow_dot(const void* a, int da, u64 arow, const u32* codes, const void* scales, u64 row, u32 kdim, u32 group, u32 lane) {
    const u32 PER = QFmt<F>::PER;
    u32 words = kdim / PER;
    const u32* cw = codes + row * words;
    u64 srow = row * (kdim / group);
    const u32 step = (words & 3u) == 0u ? 4u : 1u;
    float acc = 0.0f;
    for (u32 w0 = lane * step; w0 < words; w0 += 32u * step) {
        u32 v[4] = {0u, 0u, 0u, 0u};
        if (step == 4u) {
            uint4 q = ((const uint4*)cw)[w0 / 4u];
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        } else {
            v[0] = cw[w0];
        }
#pragma unroll 1
        for (u32 t = 0; t < step; ++t) {
            u32 k = (w0 + t) * PER;
            float part = 0.0f;
#pragma unroll
            for (u32 j = 0; j < PER; ++j) part += ld(a, da, arow * kdim + k + j) * qcode<F>(v[t], (int)j);
            acc += part * qscale<F>(scales, srow + k / group);
        }
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    return acc;
}

template <bool TWO, int F>
__device__ __forceinline__ void qgrouped_vec(const void* a, const u32* codes, const void* scales, const u32* route, void* out, u32 kdim, u32 n, u32 topk, u32 e, u32 group, int da, int dt) {
    u64 p = blockIdx.y;
    u32 ex = route[p];
    u32 warp = threadIdx.x / 32u, lane = threadIdx.x % 32u;
    u64 c = (u64)blockIdx.x * 8u + warp;
    // Whole warps leave together, so the shuffles always see full warps.
    if (ex >= e || c >= n) return;
    u64 arow = TWO ? p / topk : p;
    u64 rows = TWO ? 2ull * n : (u64)n;
    float g = qrow_dot<F>(a, da, arow, codes, scales, (u64)ex * rows + c, kdim, group, lane);
    float u = TWO ? qrow_dot<F>(a, da, arow, codes, scales, (u64)ex * rows + n + c, kdim, group, lane) : 0.0f;
    if (lane != 0u) return;
    if (TWO) st(out, dt, p * n + c, swiglu_rounded(dt, g, u));
    else st(out, dt, p * n + c, g);
}

extern "C" __global__ void qmoe_gate_up_vec(const void* x, const u32* codes, const void* scales, const u32* route, void* act, u32 kdim, u32 n, u32 topk, u32 e, u32 group, int fmt, int da, int dt) {
    if (fmt == 8) qgrouped_vec<true, 8>(x, codes, scales, route, act, kdim, n, topk, e, group, da, dt);
    else if (fmt == QF_FP8) qgrouped_vec<true, QF_FP8>(x, codes, scales, route, act, kdim, n, topk, e, group, da, dt);
    else qgrouped_vec<true, 4>(x, codes, scales, route, act, kdim, n, topk, e, group, da, dt);
}

extern "C" __global__ void qmoe_down_vec(const void* act, const u32* codes, const void* scales, const u32* route, void* y, u32 kdim, u32 n, u32 topk, u32 e, u32 group, int fmt, int da, int dt) {
    if (fmt == 8) qgrouped_vec<false, 8>(act, codes, scales, route, y, kdim, n, topk, e, group, da, dt);
    else if (fmt == QF_FP8) qgrouped_vec<false, QF_FP8>(act, codes, scales, route, y, kdim, n, topk, e, group, da, dt);
    else qgrouped_vec<false, 4>(act, codes, scales, route, y, kdim, n, topk, e, group, da, dt);
}
