// FP8 weights times FP8 activations on tensor cores (W8A8; mma.sync m16n8k32 e4m3, sm_89 and
// later): Op::QMatMul at prefill for FP8 weights in groups of a multiple of 32, x in bf16 / f16
// with K a multiple of 32, when LUMEN_CUDA_FP8_ACTIVATIONS=1 asks for it (src/backend/cuda/quant.rs).
//
// A block is a 64 x 64 tile of y, 4 warps of 16 rows; K goes in steps of 32 through shared
// memory. Each step quantizes x's tile to E4M3 with one scale per row and step (two threads a
// row, 16 values each: s = amax / 448, codes = rn_satfinite(v * (448 / amax))) and copies the
// weights' FP8 codes as they are ([column][k], so every fragment is one 32-bit load); each
// step's 32-term dot products of codes (every product exact in f32) start from zero and are
// scaled by the row's activation scale and the column's weight scale of that group, then summed
// in f32. Against the W8A16 path (qmatmul_tc.cu) this
// rounds x to E4M3 too, finer-grained than the per-token scales of common W8A8 schemes.
// A stack of weights is the grid's z, x shared (xstride 0) or [B, M, K] (xstride M * K).
#define F8_BM 64
#define F8_BN 64
#define F8_BK 32
#define F8_LD (F8_BK + 16)

// c += a b for one m16n8k32 tile of E4M3 codes (a: 4 words, b: 2; f32 c), sm_89 and later.
__device__ __forceinline__ void mma_16832_e4m3(float* c, const u32* a, u32 b0, u32 b1) {
#if __CUDA_ARCH__ >= 890
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
}

// lo and hi rounded to E4M3 (nearest even, saturating at 448), lo in the low byte.
__device__ __forceinline__ u32 e4m3x2(float lo, float hi) {
#if __CUDA_ARCH__ >= 890
    unsigned short d;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(d) : "f"(hi), "f"(lo));
    return d;
#else
    __trap();
    return 0u;
#endif
}

template <bool F16>
__device__ __forceinline__ void qgemm_f8(const u16* x, const u32* codes, const float* scales, u16* y, u64 m, u64 n, u32 kdim, u32 group, u8* as, u8* bs, float* sx, float* sw) {
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const u64 row0 = (u64)blockIdx.y * F8_BM, col0 = (u64)blockIdx.x * F8_BN;
    const u32 words = kdim / 4, groups = kdim / group;
    const int dt = F16 ? 1 : 2;
    float acc[F8_BN / 8][4];
#pragma unroll
    for (int nt = 0; nt < F8_BN / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    // Two threads per row of x and per column of weights: 16 values (32 bytes of x, 16 of codes).
    const int r = tid >> 1, h = tid & 1;
    for (u32 k0 = 0; k0 < kdim; k0 += F8_BK) {
        __syncthreads(); // every warp is done with the previous tiles
        {
            float v[16];
            uint4 lo = make_uint4(0u, 0u, 0u, 0u), hi = lo;
            if (row0 + r < m) {
                const uint4* src = (const uint4*)(x + (row0 + r) * kdim + k0 + h * 16);
                lo = src[0];
                hi = src[1];
            }
            unpack_half8(lo, dt, v);
            unpack_half8(hi, dt, v + 8);
            float amax = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; ++i) amax = fmaxf(amax, fabsf(v[i]));
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
            // A zero chunk, or one so small (bf16 below ~1e-36) that 448 / amax overflows, is
            // all zero codes: 0 * inf would be NaN.
            float inv = 448.0f / amax;
            if (!(inv <= 3.0e38f)) inv = 0.0f;
            u32 q[4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
                q[i] = e4m3x2(v[4 * i] * inv, v[4 * i + 1] * inv) | (e4m3x2(v[4 * i + 2] * inv, v[4 * i + 3] * inv) << 16);
            *(uint4*)(as + r * F8_LD + h * 16) = make_uint4(q[0], q[1], q[2], q[3]);
            if (h == 0) sx[r] = amax / 448.0f;
        }
        {
            const u64 col = col0 + r;
            uint4 w = make_uint4(0u, 0u, 0u, 0u);
            if (col < n) w = *(const uint4*)(codes + col * words + k0 / 4 + h * 4);
            *(uint4*)(bs + r * F8_LD + h * 16) = w;
            if (h == 0) sw[r] = col < n ? scales[col * groups + k0 / group] : 0.0f;
        }
        __syncthreads();
        const u8* ar = as + (warp * 16 + g) * F8_LD + tig * 4;
        const u32 af[4] = {*(const u32*)ar, *(const u32*)(ar + 8 * F8_LD), *(const u32*)(ar + 16), *(const u32*)(ar + 8 * F8_LD + 16)};
        const float s0 = sx[warp * 16 + g], s1 = sx[warp * 16 + g + 8];
#pragma unroll
        for (int nt = 0; nt < F8_BN / 8; ++nt) {
            const u8* br = bs + (nt * 8 + g) * F8_LD + tig * 4;
            float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            mma_16832_e4m3(p, af, *(const u32*)br, *(const u32*)(br + 16));
            const float w0 = sw[nt * 8 + tig * 2], w1 = sw[nt * 8 + tig * 2 + 1];
            acc[nt][0] += p[0] * (s0 * w0);
            acc[nt][1] += p[1] * (s0 * w1);
            acc[nt][2] += p[2] * (s1 * w0);
            acc[nt][3] += p[3] * (s1 * w1);
        }
    }
    store_fragments<F16, F8_BN / 8>(y, m, n, row0 + warp * 16, col0, acc, 1.0f);
}

// One entry per x dtype: qmatmul_f8_{bf16,f16}(x, codes, scales (f32), y, m, n, kdim, group,
// xstride); weight blockIdx.z of a stack.
#define QMATMUL_F8_ENTRY(name, f16)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128) name(const u16* x, const u32* codes, const float* scales, u16* y, \
                                                           u64 m, u64 n, u64 kdim, u64 group, u64 xstride) {            \
        __shared__ __align__(16) u8 as[F8_BM * F8_LD];                                                                  \
        __shared__ __align__(16) u8 bs[F8_BN * F8_LD];                                                                  \
        __shared__ float sx[F8_BM], sw[F8_BN];                                                                          \
        const u64 z = blockIdx.z;                                                                                       \
        qgemm_f8<f16>(x + z * xstride, codes + z * n * (kdim / 4), scales + z * n * (kdim / group), y + z * m * n, m, n, \
                      (u32)kdim, (u32)group, as, bs, sx, sw);                                                           \
    }
QMATMUL_F8_ENTRY(qmatmul_f8_bf16, false)
QMATMUL_F8_ENTRY(qmatmul_f8_f16, true)
