// The fused MoE op's expert GEMMs, tuned (moe.cu has the plain ones; src/backend/cuda/moe.rs
// picks): 16-bit expert weights, x in the same 16-bit dtype for the tensor-core path.
//
// moe_gate_up_vec16 / moe_down_vec16 (decode: one routed pair per block row, grid y): expert
// weights stored [E, K, N] (the hub layout), N a multiple of 8. Thread t owns 8 consecutive
// columns (chunk t % CW of the block's CW chunks) and K slice t / CW; each weight row segment is
// one 16-byte streaming load, VEC_U rows in flight; slices are summed in order through shared
// memory. gate_up stores act = swiglu(g, u) [pairs, I], down y [pairs, H] by pair.
//
// moe_gate_up_tc / moe_down_tc (prefill; qmoe_gate_up_tc / qmoe_down_tc over quantized stacks,
// each weight tile decoded from its codes): the grouped GEMM over moe_align's plan with tiles of
// TC_BM = 64 sorted rows of one expert, on tensor cores (mma.sync m16n8k16, f32 accumulation).
// A block is one tile x TC_BN columns (gate_up: those columns of gate and of up), 4 warps of 16
// rows; K in steps of TC_BK through shared memory: the tile's rows of a (gathered by token for
// gate_up, padding rows zero) and the weights transposed to [column][k] so every fragment is
// one 32-bit load. TRANS: weights stored [E, N, K] (rows copied as they are) instead of [E, K, N].
#define VEC_U 4
#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
#define TC_LD (TC_BK + 8)
#define SENT 0xffffffffu

template <bool TWO>
__device__ __forceinline__ void grouped_vec16(const void* a, const u16* w, const u32* route, void* out, u32 kdim, u32 n, u32 topk, u32 e, u32 cw, int da, int dw, int dt) {
    __shared__ float part1[256 * 8];
    __shared__ float part2[TWO ? 256 * 8 : 1];
    const u64 p = blockIdx.y;
    const u32 ex = route[p];
    if (ex >= e) return;
    const u32 t = threadIdx.x, chunk = t % cw, slice = t / cw, slices = blockDim.x / cw, width8 = cw * 8u;
    const u64 c0 = ((u64)blockIdx.x * cw + chunk) * 8u;
    const u64 arow = TWO ? p / topk : p;
    const u64 width = TWO ? 2ull * n : (u64)n;
    const u16* wb = w + (u64)ex * kdim * width;
    float g[8], u[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) g[i] = u[i] = 0.0f;
    if (c0 < n) {
        for (u32 k0 = slice; k0 < kdim; k0 += slices * VEC_U) {
            uint4 gv[VEC_U], uv[VEC_U];
            float xv[VEC_U];
#pragma unroll
            for (int r = 0; r < VEC_U; ++r) {
                const u64 kk = k0 + (u64)r * slices;
                const bool live = kk < kdim;
                xv[r] = live ? ld(a, da, arow * kdim + kk) : 0.0f;
                gv[r] = live ? ld_stream16(wb + kk * width + c0) : make_uint4(0u, 0u, 0u, 0u);
                if (TWO) uv[r] = live ? ld_stream16(wb + kk * width + n + c0) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int r = 0; r < VEC_U; ++r) {
                float wf[8];
                unpack_half8(gv[r], dw, wf);
#pragma unroll
                for (int i = 0; i < 8; ++i) g[i] += xv[r] * wf[i];
                if (TWO) {
                    unpack_half8(uv[r], dw, wf);
#pragma unroll
                    for (int i = 0; i < 8; ++i) u[i] += xv[r] * wf[i];
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        part1[slice * width8 + chunk * 8u + i] = g[i];
        if (TWO) part2[slice * width8 + chunk * 8u + i] = u[i];
    }
    __syncthreads();
    if (t >= width8) return;
    const u64 col = (u64)blockIdx.x * width8 + t;
    if (col >= n) return;
    float sg = 0.0f, su = 0.0f;
    for (u32 s = 0; s < slices; ++s) {
        sg += part1[s * width8 + t];
        if (TWO) su += part2[s * width8 + t];
    }
    st(out, dt, p * n + col, TWO ? swiglu_rounded(dt, sg, su) : sg);
}

extern "C" __global__ void moe_gate_up_vec16(const void* x, const u16* w, const u32* route, void* act, u32 kdim, u32 n, u32 topk, u32 e, u32 cw, int da, int dw, int dt) {
    grouped_vec16<true>(x, w, route, act, kdim, n, topk, e, cw, da, dw, dt);
}

extern "C" __global__ void moe_down_vec16(const void* act, const u16* w, const u32* route, void* y, u32 kdim, u32 n, u32 topk, u32 e, u32 cw, int da, int dw, int dt) {
    grouped_vec16<false>(act, w, route, y, kdim, n, topk, e, cw, da, dw, dt);
}

// Chunk idx of the weight tile (columns col_base.. of the expert's matrix of `width` columns,
// k0..) into the transposed tile bt [TC_BN][TC_LD]; zeros at columns >= cend or k >= K.
template <bool TRANS>
__device__ __forceinline__ void tc_stage_b(u16* bt, const u16* wb, u64 kdim, u64 width, u64 col_base, u64 cend, u32 k0, int idx) {
    if (TRANS) {
        // [N, K] rows: chunk idx = column * (TC_BK / 8) + k chunk; 16 bytes straight to bt.
        const int col = idx / (TC_BK / 8), kc = (idx % (TC_BK / 8)) * 8;
        const u64 c = col_base + col, kk = k0 + kc;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (c < cend && kk < kdim) v = *(const uint4*)(wb + c * kdim + kk);
        *(uint4*)(bt + col * TC_LD + kc) = v;
    } else {
        // [K, N] rows: chunk idx = k * (TC_BN / 8) + column chunk; 8 halves scattered to 8 rows.
        const int kr = idx / (TC_BN / 8), cc = (idx % (TC_BN / 8)) * 8;
        const u64 c = col_base + cc, kk = k0 + kr;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (c < cend && kk < kdim) v = *(const uint4*)(wb + kk * width + c);
        const u32 q[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            bt[(cc + 2 * e) * TC_LD + kr] = (u16)(q[e] & 0xffffu);
            bt[(cc + 2 * e + 1) * TC_LD + kr] = (u16)(q[e] >> 16);
        }
    }
}

// The weights of grouped_tc: 16-bit stacks, [E, K, N] (or [E, N, K] when TRANS), staged as
// they are ...
template <bool TRANS> struct Dense16 {
    const u16* w;
    u64 kdim, width;
    // The expert's tile chunk idx (of TC_BN * TC_BK / 8) into bt.
    __device__ __forceinline__ void stage(u16* bt, u64 ex, u64 col_base, u64 cend, u32 k0, int idx) const {
        tc_stage_b<TRANS>(bt, w + ex * kdim * width, kdim, width, col_base, cend, k0, idx);
    }
    static constexpr int CHUNKS = TC_BN * (TC_BK / 8);
    __device__ __forceinline__ float global(u64) const { return 1.0f; }
};

// ... or weight-only quantized stacks (Op::QMoe: codes [E, rows, K / PER] of format F, group
// scales, NVFP4's global scale per expert), each code word decoded, (code - zero) * scale
// rounded to the 16-bit type, into bt: only the tile's decoded weights ever exist.
template <int F, bool F16> struct QuantTiles {
    const u32* codes;
    const void* scales;
    const float* globals;
    u64 rows;
    u32 kdim, group;
    static constexpr int CHUNKS = TC_BN * (TC_BK / (int)QFmt<F>::PER);
    // Code word idx (of CHUNKS) of the tile (rows col_base.. of expert ex, inputs k0..).
    __device__ __forceinline__ void stage(u16* bt, u64 ex, u64 col_base, u64 cend, u32 k0, int idx) const {
        const u32 PER = QFmt<F>::PER;
        const int c = idx / (TC_BK / PER), kw = (idx % (TC_BK / PER)) * PER;
        const u32 kk = k0 + kw;
        u32 word = 0u;
        QGroup q = {0.0f, 0.0f};
        if (col_base + c < cend && kk < kdim) {
            const u64 row = ex * rows + col_base + c;
            word = codes[row * (kdim / PER) + kk / PER];
            q = qgroup<F>(scales, row * (kdim / group) + kk / group);
        }
        qdecode16<F, F16>(bt + c * TC_LD + kw, word, q);
    }
    __device__ __forceinline__ float global(u64 ex) const { return globals ? globals[ex] : 1.0f; }
};

// Shared tiles are the entry's (TC_TILES), passed down, so that instantiations for several
// weight formats in one entry do not each reserve their own.
template <bool TWO, bool F16, typename W>
__device__ __forceinline__ void grouped_tc(const u16* a, const W& w, const u32* plan, u16* out, u32 kdim, u32 n, u32 topk, u32 mt, u16* as, u16* bt) {
    const u32 tile = blockIdx.x;
    if (tile >= plan[0]) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const u64 ex = plan[1u + tile], col0 = (u64)blockIdx.y * TC_BN;
    const u32* rows = plan + 1ull + mt + (u64)tile * TC_BM;
    float acc1[TC_BN / 8][4], acc2[TWO ? TC_BN / 8 : 1][4];
#pragma unroll
    for (int nt = 0; nt < TC_BN / 8; ++nt) {
        acc1[nt][0] = acc1[nt][1] = acc1[nt][2] = acc1[nt][3] = 0.0f;
        if (TWO) acc2[nt][0] = acc2[nt][1] = acc2[nt][2] = acc2[nt][3] = 0.0f;
    }
    for (u32 k0 = 0; k0 < kdim; k0 += TC_BK) {
        __syncthreads(); // every warp is done with the previous tiles
        for (int idx = tid; idx < TC_BM * (TC_BK / 8); idx += blockDim.x) {
            const int r = idx / (TC_BK / 8), kc = (idx % (TC_BK / 8)) * 8;
            const u32 pair = rows[r];
            const u64 arow = TWO ? (u64)(pair / topk) : (u64)tile * TC_BM + r;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (pair != SENT && k0 + kc < kdim) v = *(const uint4*)(a + arow * kdim + k0 + kc);
            *(uint4*)(as + r * TC_LD + kc) = v;
        }
        for (int idx = tid; idx < W::CHUNKS; idx += blockDim.x) {
            w.stage(bt, ex, col0, n, k0, idx);
            if (TWO) w.stage(bt + TC_BN * TC_LD, ex, n + col0, 2ull * n, k0, idx);
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < TC_BK / 16; ++ks) {
            const u16* ar = as + (warp * 16 + g) * TC_LD + ks * 16 + tig * 2;
            u32 af[4];
            a_fragment(af, ar, TC_LD);
#pragma unroll
            for (int nt = 0; nt < TC_BN / 8; ++nt) {
                const u16* br = bt + (nt * 8 + g) * TC_LD + ks * 16 + tig * 2;
                mma_16816<F16>(acc1[nt], af, br);
                if (TWO) {
                    mma_16816<F16>(acc2[nt], af, br + TC_BN * TC_LD);
                }
            }
        }
    }
    const int dt = F16 ? 1 : 2;
    const float gs = w.global(ex);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int r = warp * 16 + g + 8 * half;
        const u32 pair = rows[r];
        if (pair == SENT) continue;
        // gate_up: act row = sorted row; down: y row = pair.
        const u64 orow = TWO ? (u64)tile * TC_BM + r : (u64)pair;
#pragma unroll
        for (int nt = 0; nt < TC_BN / 8; ++nt) {
            const u64 c = col0 + nt * 8 + tig * 2;
            if (c >= n) continue;
            float v0 = acc1[nt][2 * half] * gs, v1 = acc1[nt][2 * half + 1] * gs;
            if (TWO) {
                v0 = swiglu_rounded(dt, v0, acc2[nt][2 * half] * gs);
                v1 = swiglu_rounded(dt, v1, acc2[nt][2 * half + 1] * gs);
            }
            *(u32*)(out + orow * n + c) = pack_half2<F16>(v0, v1);
        }
    }
}

// The shared tiles of an entry: x's rows, then the weights' (gate and up for gate_up).
#define TC_TILES(two)                                  \
    __shared__ __align__(16) u16 as[TC_BM * TC_LD]; \
    __shared__ __align__(16) u16 bt[((two) ? 2 : 1) * TC_BN * TC_LD]

#define MOE_TC_ENTRY(name, two, trans, f16)                                                                    \
    extern "C" __global__ void __launch_bounds__(128) name(const u16* a, const u16* w, const u32* plan, u16* out, \
                                                           u32 kdim, u32 n, u32 topk, u32 mt) {                   \
        TC_TILES(two);                                                                                            \
        const Dense16<trans> src = {w, kdim, two ? 2ull * n : (u64)n};                                              \
        grouped_tc<two, f16>(a, src, plan, out, kdim, n, topk, mt, as, bt);                                       \
    }
MOE_TC_ENTRY(moe_gate_up_tc_bf16, true, false, false)
MOE_TC_ENTRY(moe_down_tc_bf16, false, false, false)
MOE_TC_ENTRY(moe_gate_up_tc_bf16_t, true, true, false)
MOE_TC_ENTRY(moe_down_tc_bf16_t, false, true, false)
MOE_TC_ENTRY(moe_gate_up_tc_f16, true, false, true)
MOE_TC_ENTRY(moe_down_tc_f16, false, false, true)
MOE_TC_ENTRY(moe_gate_up_tc_f16_t, true, true, true)
MOE_TC_ENTRY(moe_down_tc_f16_t, false, true, true)

// The grouped GEMMs over quantized stacks (Op::QMoe at prefill, x in bf16 / f16): codes,
// scales and NVFP4's global scales per expert (null for the other formats), fmt the prelude's
// format id; the plan and outputs as the 16-bit entries'.
template <bool TWO, bool F16>
__device__ __forceinline__ void qgrouped_tc(const u16* a, const u32* codes, const void* scales, const float* global, const u32* plan, u16* out, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int fmt, u16* as, u16* bt) {
    const u64 rows = TWO ? 2ull * n : (u64)n;
#define QGTC(F)                                                                  \
    {                                                                            \
        const QuantTiles<F, F16> src = {codes, scales, global, rows, kdim, group}; \
        grouped_tc<TWO, F16>(a, src, plan, out, kdim, n, topk, mt, as, bt);      \
    }
    QDISPATCH(fmt, QGTC)
#undef QGTC
}

#define QMOE_TC_ENTRY(name, two, f16)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128) name(const u16* a, const u32* codes, const void* scales,           \
                                                           const float* global, const u32* plan, u16* out, u32 kdim,    \
                                                           u32 n, u32 topk, u32 mt, u32 group, int fmt) {               \
        TC_TILES(two);                                                                                                   \
        qgrouped_tc<two, f16>(a, codes, scales, global, plan, out, kdim, n, topk, mt, group, fmt, as, bt);              \
    }
QMOE_TC_ENTRY(qmoe_gate_up_tc_bf16, true, false)
QMOE_TC_ENTRY(qmoe_down_tc_bf16, false, false)
QMOE_TC_ENTRY(qmoe_gate_up_tc_f16, true, true)
QMOE_TC_ENTRY(qmoe_down_tc_f16, false, true)
