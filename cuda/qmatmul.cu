// Weight-only quantized matmul (Op::QMatMul, W8A16 / W4A16 / FP8 weights; src/quant/mod.rs):
// y[m, n] = sum_k x[m, k] * code(n, k) * scale[n, k / group], f32 accumulation, y in x's dtype.
// x [M, K] (dtype dx: f32, f16 or bf16), codes [N, K / PER] u32 words of PER = 32 / bits codes
// packed little-endian (Q8: int8; Q4: unsigned, value code - 8; FP8: E4M3), scales [N, K / group]
// (f16; f32 for FP8). A
// group is a multiple of PER, so one word's codes share one scale. Codes are dequantized in
// registers (or into the shared tile); no full-precision weight is ever written.
//
// qmatmul (few rows, decode: M <= QG_ROWS): a warp per output n, 8 per block, its lanes
// striding over the row's codes 16 bytes (4 words) at a time when rows are 16-byte aligned,
// each word decoded once and applied to every row of x, then a warp-shuffle reduction.
// qmatmul_tiled (prefill with f32 x, or when qmatmul_tc.cu's tensor-core tiles do not apply):
// 64 x 64 output tiles, 16 x 16 threads with 4 x 4 outputs each, K in steps of 32 through shared
// memory, the codes dequantized (times their scale) into the tile.
// Both are instantiated for each (x f32 or 16-bit, format id: 8, 4, QF_FP8, QF_NVFP4 of the
// prelude; FP8 codes are E4M3 bytes with f32 scales, NVFP4's E2M1 nibbles with E4M3 scale
// bytes and a global scale per weight that multiplies each output); shared tiles are declared by the
// kernel and passed down, so the instantiations do not each reserve their own. A stack of
// weights (MoE experts: codes [B, N, K / PER], scales [B, N, K / group], y [B, M, N]) is the
// grid's z; x is shared (xstride 0) or [B, M, K] (xstride M * K).
#define QG_ROWS 8
#define QG_WARPS 8u
#define QT_BM 64u
#define QT_BN 64u
#define QT_BK 32u

struct alignas(16) Words4 { u32 x, y, z, w; };
struct alignas(16) F32x4 { float x, y, z, w; };
struct alignas(8) H16x4 { u32 lo, hi; };

__device__ __forceinline__ float half_to_f32(int dt, u32 h) { return dt == 1 ? h2f(h) : bits_f32(h << 16); }

// Element i of x: f32 when !H, else f16 or bf16 as dx says (one instantiation for both
// 16-bit types: the extra select is free next to the memory traffic).
template <bool H> __device__ __forceinline__ float ldx(const void* x, int dx, u64 i) {
    if (!H) return ((const float*)x)[i];
    return half_to_f32(dx, ((const u16*)x)[i]);
}

// Outputs are stored once each: one out-of-line copy of the dtype conversion, not one per
// unrolled store.
__device__ __noinline__ void store(void* y, int dt, u64 i, float v) { st(y, dt, i, v); }

// x[i .. i + 4] . w[0 .. 4] with one vector load: i is a multiple of 4 (K and every word's
// first input are multiples of PER), so the load is aligned.
template <bool H> __device__ __forceinline__ float dot4(const void* x, int dx, u64 i, const float* w) {
    if (!H) {
        F32x4 v = ((const F32x4*)x)[i / 4];
        return v.x * w[0] + v.y * w[1] + v.z * w[2] + v.w * w[3];
    }
    H16x4 v = ((const H16x4*)x)[i / 4];
    return half_to_f32(dx, v.lo & 0xffffu) * w[0] + half_to_f32(dx, v.lo >> 16) * w[1] +
           half_to_f32(dx, v.hi & 0xffffu) * w[2] + half_to_f32(dx, v.hi >> 16) * w[3];
}

// One word of codes (inputs k .. k + PER of output n) decoded once and applied to every row.
template <bool H, int F>
__device__ __forceinline__ void qword(const void* x, int dx, u64 m, u64 kdim, u64 k, u32 word, QGroup g, float* acc) {
    const int PER = QFmt<F>::PER;
    float w[PER];
#pragma unroll
    for (int j = 0; j < PER; ++j) w[j] = (qcode<F>(word, j) - g.z) * g.s;
#pragma unroll
    for (int r = 0; r < QG_ROWS; ++r) {
        if ((u64)r < m) {
            float a = 0.0f;
#pragma unroll
            for (int j = 0; j < PER; j += 4) a += dot4<H>(x, dx, (u64)r * kdim + k + j, w + j);
            acc[r] += a;
        }
    }
}

template <bool H, int F>
__device__ __forceinline__ void qgemv(const void* x, const u32* codes, const void* scales, void* y, u64 m, u64 n, u32 kdim, u32 group, int dx, float gs) {
    const u32 PER = QFmt<F>::PER;
    u32 warp = threadIdx.x / 32u, lane = threadIdx.x % 32u;
    u64 row = ((u64)blockIdx.y * gridDim.x + blockIdx.x) * QG_WARPS + warp;
    // Whole warps leave together, so the shuffles below always see full warps.
    if (row >= n) return;
    u32 words = kdim / PER, groups = kdim / group;
    const u32* cw = codes + row * words;
    u64 srow = row * groups;
    float acc[QG_ROWS];
#pragma unroll
    for (int r = 0; r < QG_ROWS; ++r) acc[r] = 0.0f;
    // Rows of a multiple of 4 words start 16-byte aligned (allocations are 256-aligned): lanes
    // then take 16 bytes of codes at a time, else one word.
    u32 step = (words & 3u) == 0u ? 4u : 1u;
    for (u32 w0 = lane * step; w0 < words; w0 += 32u * step) {
        Words4 v = {0u, 0u, 0u, 0u};
        if (step == 4u) v = ((const Words4*)cw)[w0 / 4u];
        else v.x = cw[w0];
        // Not unrolled: one copy of the decode-and-multiply body keeps the module small.
#pragma unroll 1
        for (u32 t = 0; t < step; ++t) {
            u32 word = t == 0u ? v.x : t == 1u ? v.y : t == 2u ? v.z : v.w;
            u32 k = (w0 + t) * PER;
            qword<H, F>(x, dx, m, kdim, k, word, qgroup<F>(scales, srow + k / group), acc);
        }
    }
#pragma unroll
    for (int r = 0; r < QG_ROWS; ++r) {
        if ((u64)r >= m) break;
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0u) store(y, dx, (u64)r * n + row, v * gs);
    }
}

// Moves the pointers to weight blockIdx.z of a stack.
__device__ __forceinline__ void stack_at(const void*& x, const u32*& codes, const void*& scales, void*& y, u64 m, u64 n, u64 kdim, u64 group, int fmt, int dx, u64 xstride) {
    u64 z = blockIdx.z, es = dx == 0 ? 4 : 2;
    x = (const char*)x + z * xstride * es;
    codes += z * n * (kdim / qper(fmt));
    scales = (const char*)scales + z * n * (kdim / group) * qscale_bytes(fmt);
    y = (char*)y + z * m * n * es;
}

// global: NVFP4's global scales, one per weight of the stack (null for the other formats).
extern "C" __global__ void qmatmul(const void* x, const u32* codes, const void* scales, void* y, u64 m, u64 n, u64 kdim, u64 group, int fmt, int dx, u64 xstride, const float* global) {
    stack_at(x, codes, scales, y, m, n, kdim, group, fmt, dx, xstride);
    u32 k = (u32)kdim, g = (u32)group;
    float gs = global ? global[blockIdx.z] : 1.0f;
#define QGEMV(F)                                                   \
    if (dx == 0) qgemv<false, F>(x, codes, scales, y, m, n, k, g, dx, gs); \
    else qgemv<true, F>(x, codes, scales, y, m, n, k, g, dx, gs)
    QDISPATCH(fmt, QGEMV)
#undef QGEMV
}

template <bool H, int F>
__device__ __forceinline__ void qgemm(const void* x, const u32* codes, const void* scales, void* y, u64 m, u64 n, u32 kdim, u32 group, int dx, float gs, float (*xs)[QT_BM + 4u], float (*ws)[QT_BN + 4u]) {
    const u32 PER = QFmt<F>::PER;
    u32 tx = threadIdx.x, ty = threadIdx.y, li = ty * 16u + tx;
    u64 row0 = (u64)blockIdx.y * QT_BM, col0 = (u64)blockIdx.x * QT_BN;
    u32 words = kdim / PER, groups = kdim / group;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (u32 k0 = 0; k0 < kdim; k0 += QT_BK) {
        // x tile, k-major so the product loop reads a row of it; consecutive threads read
        // consecutive k of one row of x.
#pragma unroll
        for (u32 e = 0; e < QT_BM * QT_BK / 256u; ++e) {
            u32 idx = li + e * 256u, am = idx / QT_BK, ak = idx % QT_BK;
            xs[ak][am] = (row0 + am < m && k0 + ak < kdim) ? ldx<H>(x, dx, (row0 + am) * kdim + k0 + ak) : 0.0f;
        }
        // Codes tile: QT_BN rows of QT_BK / PER words (two words per thread for Q8, one for Q4).
        // K is a multiple of PER: a word is wholly inside K or wholly past it.
#pragma unroll
        for (u32 e = 0; e < QT_BN * QT_BK / PER / 256u; ++e) {
            u32 idx = li + e * 256u, bn = idx / (QT_BK / PER), bw = idx % (QT_BK / PER);
            u64 c = col0 + bn;
            u32 kw = k0 + bw * PER;
            u32 word = 0u;
            QGroup g = {0.0f, 0.0f};
            if (c < n && kw < kdim) {
                word = codes[c * words + kw / PER];
                g = qgroup<F>(scales, c * groups + kw / group);
            }
#pragma unroll
            for (u32 j = 0; j < PER; ++j) ws[bw * PER + j][bn] = (qcode<F>(word, (int)j) - g.z) * g.s;
        }
        __syncthreads();
#pragma unroll 8
        for (u32 kk = 0; kk < QT_BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = xs[kk][ty + 16u * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = ws[kk][tx + 16u * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        u64 r = row0 + ty + 16u * i;
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            u64 c = col0 + tx + 16u * j;
            if (c < n) store(y, dx, r * n + c, acc[i][j] * gs);
        }
    }
}

extern "C" __global__ void qmatmul_tiled(const void* x, const u32* codes, const void* scales, void* y, u64 m, u64 n, u64 kdim, u64 group, int fmt, int dx, u64 xstride, const float* global) {
    __shared__ float xs[QT_BK][QT_BM + 4u];
    __shared__ float ws[QT_BK][QT_BN + 4u];
    stack_at(x, codes, scales, y, m, n, kdim, group, fmt, dx, xstride);
    u32 k = (u32)kdim, g = (u32)group;
    float gs = global ? global[blockIdx.z] : 1.0f;
#define QGEMM(F)                                                           \
    if (dx == 0) qgemm<false, F>(x, codes, scales, y, m, n, k, g, dx, gs, xs, ws); \
    else qgemm<true, F>(x, codes, scales, y, m, n, k, g, dx, gs, xs, ws)
    QDISPATCH(fmt, QGEMM)
#undef QGEMM
}
