// Weight-only quantized matmul on tensor cores (Op::QMatMul at prefill: x in bf16 / f16 with
// more rows than qmatmul.cu's GEMV takes, K a multiple of 8): y[m, n] = sum_k x[m, k] *
// w(n, k), every format of the prelude's QFmt (int8, int4, int4 with zero points, FP8 E4M3,
// NVFP4), mma.sync m16n8k16 with f32 accumulation, y in x's dtype.
//
// A block is a 64 x 64 tile of y, 4 warps of 16 rows; K goes in steps of 32 through shared
// memory: x's tile rows as they are (16-byte loads), and the weights' tile decoded from its
// code words, each weight (code - zero) * scale rounded to x's 16-bit type, transposed to
// [column][k] so every B fragment is one 32-bit load (the layout of moe_tc.cu's grouped GEMM).
// Only that 64 x 32 tile of decoded weights ever exists; the codes are read once per tile row
// of y. NVFP4's global scale (one per weight) multiplies each output. A stack of weights (MoE
// experts: codes [B, N, K / PER], scales [B, N, K / group], y [B, M, N]) is the grid's z, x
// shared (xstride 0) or [B, M, K] (xstride M * K).
#define QC_BM 64
#define QC_BN 64
#define QC_BK 32
#define QC_LD (QC_BK + 8)

template <int F, bool F16>
__device__ __forceinline__ void qgemm_tc(const u16* x, const u32* codes, const void* scales, u16* y, u64 m, u64 n, u32 kdim, u32 group, float gs, u16* as, u16* bt) {
    const u32 PER = QFmt<F>::PER;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const u64 row0 = (u64)blockIdx.y * QC_BM, col0 = (u64)blockIdx.x * QC_BN;
    const u32 words = kdim / PER, groups = kdim / group;
    float acc[QC_BN / 8][4];
#pragma unroll
    for (int nt = 0; nt < QC_BN / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    for (u32 k0 = 0; k0 < kdim; k0 += QC_BK) {
        __syncthreads(); // every warp is done with the previous tiles
        // x: 8 inputs (16 bytes) a step; K is a multiple of 8, so a chunk is wholly in or past K.
        for (int idx = tid; idx < QC_BM * (QC_BK / 8); idx += blockDim.x) {
            const int r = idx / (QC_BK / 8), kc = (idx % (QC_BK / 8)) * 8;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (row0 + r < m && k0 + kc < kdim) v = *(const uint4*)(x + (row0 + r) * kdim + k0 + kc);
            *(uint4*)(as + r * QC_LD + kc) = v;
        }
        // Weights: one code word (PER inputs of one column, one group) a step.
        for (int idx = tid; idx < QC_BN * (QC_BK / (int)PER); idx += blockDim.x) {
            const int c = idx / (QC_BK / PER), kw = (idx % (QC_BK / PER)) * PER;
            const u64 col = col0 + c;
            const u32 kk = k0 + kw;
            u32 word = 0u;
            QGroup q = {0.0f, 0.0f};
            if (col < n && kk < kdim) {
                word = codes[col * words + kk / PER];
                q = qgroup<F>(scales, col * groups + kk / group);
            }
            qdecode16<F, F16>(bt + c * QC_LD + kw, word, q);
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < QC_BK / 16; ++ks) {
            const u16* ar = as + (warp * 16 + g) * QC_LD + ks * 16 + tig * 2;
            u32 af[4];
            a_fragment(af, ar, QC_LD);
#pragma unroll
            for (int nt = 0; nt < QC_BN / 8; ++nt) {
                const u16* br = bt + (nt * 8 + g) * QC_LD + ks * 16 + tig * 2;
                mma_16816<F16>(acc[nt], af, br);
            }
        }
    }
    store_fragments<F16, QC_BN / 8>(y, m, n, row0 + warp * 16, col0, acc, gs);
}

// Moves the pointers to weight blockIdx.z of a stack, then runs the tile.
template <int F, bool F16>
__device__ __forceinline__ void qmatmul_tc_at(const u16* x, const u32* codes, const void* scales, u16* y, u64 m, u64 n, u64 kdim, u64 group, u64 xstride, const float* global) {
    __shared__ __align__(16) u16 as[QC_BM * QC_LD];
    __shared__ __align__(16) u16 bt[QC_BN * QC_LD];
    const u64 z = blockIdx.z;
    x += z * xstride;
    codes += z * n * (kdim / QFmt<F>::PER);
    scales = (const char*)scales + z * n * (kdim / group) * qscale_bytes(F);
    y += z * m * n;
    const float gs = global ? global[z] : 1.0f;
    qgemm_tc<F, F16>(x, codes, scales, y, m, n, (u32)kdim, (u32)group, gs, as, bt);
}

// One entry per x dtype and format (the prelude's ids, named): qmatmul_tc_{bf16,f16}_{q8,q4,
// q4z,fp8,nvfp4}. global: NVFP4's global scales, one per weight of the stack (null otherwise).
#define QMATMUL_TC_ENTRY(name, F, f16)                                                                               \
    extern "C" __global__ void __launch_bounds__(128) name(const u16* x, const u32* codes, const void* scales, u16* y, \
                                                           u64 m, u64 n, u64 kdim, u64 group, u64 xstride,              \
                                                           const float* global) {                                       \
        qmatmul_tc_at<F, f16>(x, codes, scales, y, m, n, kdim, group, xstride, global);                                 \
    }
QMATMUL_TC_ENTRY(qmatmul_tc_bf16_q8, 8, false)
QMATMUL_TC_ENTRY(qmatmul_tc_bf16_q4, 4, false)
QMATMUL_TC_ENTRY(qmatmul_tc_bf16_q4z, QF_Q4Z, false)
QMATMUL_TC_ENTRY(qmatmul_tc_bf16_fp8, QF_FP8, false)
QMATMUL_TC_ENTRY(qmatmul_tc_bf16_nvfp4, QF_NVFP4, false)
QMATMUL_TC_ENTRY(qmatmul_tc_f16_q8, 8, true)
QMATMUL_TC_ENTRY(qmatmul_tc_f16_q4, 4, true)
QMATMUL_TC_ENTRY(qmatmul_tc_f16_q4z, QF_Q4Z, true)
QMATMUL_TC_ENTRY(qmatmul_tc_f16_fp8, QF_FP8, true)
QMATMUL_TC_ENTRY(qmatmul_tc_f16_nvfp4, QF_NVFP4, true)
