// The few-pairs (decode) expert GEMMs of the fused MoE over weight-only quantized experts
// (Op::QMoe), as moe.cu's moe_gate_up_vec / moe_down_vec (same route and output rows; moe.cu
// holds the tiled qmoe_gate_up / qmoe_down and the combine), each weight decoded from its code
// word and group scale as it is read: no full-precision weight is written. Stacks are
// [E, out, in]: codes [E, rows, K / PER] u32 (PER = 32 / bits codes each), scales
// [E, rows, K / group] (f16; f32 for FP8; u32 words for Q4z; fmt is the prelude's format id); gate_up's 2N rows
// are the gate rows, then the up rows.
//
// One routed pair per block row (grid y), a warp per output column (8 per block), its lanes
// taking 16 bytes of codes (4 words) at a time when rows are a multiple of 4 words, each word
// decoded once, then a shuffle reduction.

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
            QGroup g = qgroup<F>(scales, srow + k / group);
            float part = 0.0f;
#pragma unroll
            for (u32 j = 0; j < PER; ++j) part += ld(a, da, arow * kdim + k + j) * (qcode<F>(v[t], (int)j) - g.z);
            acc += part * g.s;
        }
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    return acc;
}

template <bool TWO, int F>
__device__ __forceinline__ void qgrouped_vec(const void* a, const u32* codes, const void* scales, const float* global, const u32* route, void* out, u32 kdim, u32 n, u32 topk, u32 e, u32 group, int da, int dt) {
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
    if (global) g *= global[ex], u *= global[ex];
    if (TWO) st(out, dt, p * n + c, swiglu_rounded(dt, g, u));
    else st(out, dt, p * n + c, g);
}

// global: NVFP4's global scales per expert, else null.
extern "C" __global__ void qmoe_gate_up_vec(const void* x, const u32* codes, const void* scales, const u32* route, void* act, u32 kdim, u32 n, u32 topk, u32 e, u32 group, int fmt, int da, int dt, const float* global) {
#define QVEC(F) qgrouped_vec<true, F>(x, codes, scales, global, route, act, kdim, n, topk, e, group, da, dt)
    QDISPATCH(fmt, QVEC)
#undef QVEC
}

extern "C" __global__ void qmoe_down_vec(const void* act, const u32* codes, const void* scales, const u32* route, void* y, u32 kdim, u32 n, u32 topk, u32 e, u32 group, int fmt, int da, int dt, const float* global) {
#define QVEC(F) qgrouped_vec<false, F>(act, codes, scales, global, route, y, kdim, n, topk, e, group, da, dt)
    QDISPATCH(fmt, QVEC)
#undef QVEC
}
