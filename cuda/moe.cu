// Grouped expert GEMMs and the weighted combine of the fused MoE op, as shaders/moe.wgsl, driven
// by the plan moe_route.cu's moe_align builds. f32 accumulation; dt, the rounding dtype of every
// intermediate, is x's (and the output's).
//
// moe_gate_up / moe_down: one block of 16 x 16 threads per (tile of BM sorted rows of one
// expert, BN output columns); grid x is the tile (MT of them, tiles past plan[0] exit at once),
// grid y the column block. K in steps of BK through shared memory; each thread owns one row and
// the 4 columns tx + 16 j.
//   gate_up: a = x [T, H] (row of sorted row q: its token), w = gate_up stack ([E, H, 2I], or
//     [E, 2I, H] when trans), out = act [MT * BM, I] by sorted row:
//     act = silu(g) * u with g, u rounded to dt, the product rounded by the store.
//   down: a = act, w = down stack ([E, I, H] or [E, H, I]), out = y [pairs, H] by pair.
// qmoe_gate_up / qmoe_down: the same over weight-only quantized stacks (Op::QMoe; their
// matvec kernels for few pairs are in qmoe.cu).
//
// Few pairs (decode): moe_gate_up_vec / moe_down_vec compute one routed pair per block row (grid
// y), matvec style, 256 threads over C columns x S slices of K (trans: C 8, S 32, a warp per
// column; else C 32, S 8, a warp per K slice, so weight rows are read contiguously), partial
// sums added in slice order. a rows are tokens (gate_up) or pairs (down); out rows are pairs.
//
// moe_combine: out [T, H] = sum over the token's k slots, in slot order, of weight * y row.
#define BM 16u
#define BN 64u
#define BK 16u
#define SENT 0xffffffffu

// The expert weights the tiled GEMMs read: a stored stack (w, dtype dw; [E, out, in] when
// trans, else [E, in, out]) ...
struct DenseStack {
    const void* w;
    int dw, trans;
    u64 rows, kdim;
    __device__ __forceinline__ bool k_major() const { return trans; }
    // Input kk of output row r of expert ex (gate_up's experts have 2N rows).
    __device__ __forceinline__ float at(u64 ex, u64 r, u64 kk) const {
        return trans ? ld(w, dw, (ex * rows + r) * kdim + kk) : ld(w, dw, (ex * kdim + kk) * rows + r);
    }
};

// ... or weight-only quantized stacks (Op::QMoe, [E, out, in]): codes of format F (the
// prelude's QFmt) and group scales, each weight decoded as it is read.
template <int F> struct QuantStack {
    const u32* codes;
    const void* scales;
    const float* global; // NVFP4: one per expert
    u64 rows;
    u32 kdim, group;
    __device__ __forceinline__ bool k_major() const { return true; }
    __device__ __forceinline__ float at(u64 ex, u64 r, u64 kk) const {
        u64 row = ex * rows + r;
        u32 word = codes[row * (kdim / QFmt<F>::PER) + kk / QFmt<F>::PER];
        QGroup g = qgroup<F>(scales, row * (kdim / group) + kk / group);
        float v = (qcode<F>(word, (int)(kk % QFmt<F>::PER)) - g.z) * g.s;
        return global ? v * global[ex] : v;
    }
};

// Shared tiles, declared by each kernel once for all its instantiations (down has no up half:
// w2 aliases w1 there, unused).
struct Tiles {
    float (*xs)[BK + 1];
    float (*w1)[BN + 1];
    float (*w2)[BN + 1];
};

template <bool TWO, class W>
__device__ __forceinline__ void grouped(const void* a, W w, const u32* plan, void* out, u32 kdim, u32 n, u32 topk, u32 mt, int da, int dt, Tiles t) {
    float (*xs)[BK + 1] = t.xs;
    float (*w1)[BN + 1] = t.w1;
    float (*w2)[BN + 1] = t.w2;
    u32 tile = blockIdx.x;
    if (tile >= plan[0]) return;
    u32 tx = threadIdx.x, ty = threadIdx.y, li = ty * 16u + tx;
    u64 ex = plan[1u + tile];
    u64 col0 = (u64)blockIdx.y * BN;
    u64 q = (u64)tile * BM + ty;
    u32 pair = plan[1ull + mt + q];
    u64 arow = TWO ? (u64)(pair / topk) : q;
    bool trans = w.k_major();
    float acc1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float acc2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (u32 k0 = 0; k0 < kdim; k0 += BK) {
        xs[ty][tx] = (pair != SENT && k0 + tx < kdim) ? ld(a, da, arow * kdim + k0 + tx) : 0.0f;
        for (u32 r = 0; r < 4u; ++r) {
            u32 idx = li + r * 256u;
            // Consecutive threads walk the stored matrix's contiguous axis.
            u32 bk = trans ? idx % BK : idx / BN;
            u32 bn = trans ? idx / BK : idx % BN;
            u64 c = col0 + bn, kk = k0 + bk;
            float g = 0.0f, u = 0.0f;
            if (c < n && kk < kdim) {
                g = w.at(ex, c, kk);
                if (TWO) u = w.at(ex, n + c, kk);
            }
            w1[bk][bn] = g;
            if (TWO) w2[bk][bn] = u;
        }
        __syncthreads();
        for (u32 kk = 0; kk < BK; ++kk) {
            float v = xs[ty][kk];
            for (u32 j = 0; j < 4u; ++j) {
                acc1[j] += v * w1[kk][tx + 16u * j];
                if (TWO) acc2[j] += v * w2[kk][tx + 16u * j];
            }
        }
        __syncthreads();
    }
    if (pair == SENT) return;
    for (u32 j = 0; j < 4u; ++j) {
        u64 c = col0 + tx + 16u * j;
        if (c >= n) continue;
        if (TWO) st(out, dt, q * n + c, swiglu_rounded(dt, acc1[j], acc2[j]));
        else st(out, dt, (u64)pair * n + c, acc1[j]);
    }
}

#define MOE_TILES(name, two)               \
    __shared__ float name##_xs[BM][BK + 1]; \
    __shared__ float name##_w1[BK][BN + 1]; \
    __shared__ float name##_w2[two ? BK : 1][BN + 1];

extern "C" __global__ void moe_gate_up(const void* x, const void* w, const u32* plan, void* act, u32 kdim, u32 n, u32 topk, u32 mt, int trans, int da, int dw, int dt) {
    MOE_TILES(t, true)
    DenseStack s = {w, dw, trans, 2ull * n, kdim};
    grouped<true>(x, s, plan, act, kdim, n, topk, mt, da, dt, Tiles{t_xs, t_w1, t_w2});
}

extern "C" __global__ void moe_down(const void* act, const void* w, const u32* plan, void* y, u32 kdim, u32 n, u32 topk, u32 mt, int trans, int da, int dw, int dt) {
    MOE_TILES(t, false)
    DenseStack s = {w, dw, trans, (u64)n, kdim};
    grouped<false>(act, s, plan, y, kdim, n, topk, mt, da, dt, Tiles{t_xs, t_w1, t_w1});
}

// The quantized stacks' tiled GEMMs (fmt: the prelude's format id; global: NVFP4's global
// scales per expert, else null).
template <bool TWO>
__device__ __forceinline__ void qgrouped(const void* a, const u32* codes, const void* scales, const float* global, const u32* plan, void* out, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int fmt, int da, int dt, Tiles t) {
    u64 rows = TWO ? 2ull * n : (u64)n;
#define QGROUPED(F) grouped<TWO>(a, QuantStack<F>{codes, scales, global, rows, kdim, group}, plan, out, kdim, n, topk, mt, da, dt, t)
    QDISPATCH(fmt, QGROUPED)
#undef QGROUPED
}

extern "C" __global__ void qmoe_gate_up(const void* x, const u32* codes, const void* scales, const u32* plan, void* act, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int fmt, int da, int dt, const float* global) {
    MOE_TILES(t, true)
    qgrouped<true>(x, codes, scales, global, plan, act, kdim, n, topk, mt, group, fmt, da, dt, Tiles{t_xs, t_w1, t_w2});
}

extern "C" __global__ void qmoe_down(const void* act, const u32* codes, const void* scales, const u32* plan, void* y, u32 kdim, u32 n, u32 topk, u32 mt, u32 group, int fmt, int da, int dt, const float* global) {
    MOE_TILES(t, false)
    qgrouped<false>(act, codes, scales, global, plan, y, kdim, n, topk, mt, group, fmt, da, dt, Tiles{t_xs, t_w1, t_w1});
}

template <bool TWO>
__device__ __forceinline__ void grouped_vec(const void* a, const void* w, const u32* route, void* out, u32 kdim, u32 n, u32 topk, u32 e, int trans, int da, int dw, int dt) {
    __shared__ float part1[256];
    __shared__ float part2[256];
    u64 p = blockIdx.y;
    u32 ex = route[p];
    if (ex >= e) return;
    u32 li = threadIdx.x;
    u32 cols = trans ? 8u : 32u, slices = trans ? 32u : 8u;
    u32 cl = trans ? li / 32u : li % 32u, ks = trans ? li % 32u : li / 32u;
    u64 c = (u64)blockIdx.x * cols + cl;
    u64 arow = TWO ? p / topk : p;
    u64 width = TWO ? 2ull * n : (u64)n;
    u64 wbase = (u64)ex * kdim * width;
    float g = 0.0f, u = 0.0f;
    if (c < n) {
        for (u64 kk = ks; kk < kdim; kk += slices) {
            float xv = ld(a, da, arow * kdim + kk);
            if (trans) {
                g += xv * ld(w, dw, wbase + c * kdim + kk);
                if (TWO) u += xv * ld(w, dw, wbase + (n + c) * kdim + kk);
            } else {
                g += xv * ld(w, dw, wbase + kk * width + c);
                if (TWO) u += xv * ld(w, dw, wbase + kk * width + n + c);
            }
        }
    }
    part1[li] = g;
    part2[li] = u;
    __syncthreads();
    if (li >= cols) return;
    c = (u64)blockIdx.x * cols + li;
    if (c >= n) return;
    float sg = 0.0f, su = 0.0f;
    for (u32 s = 0; s < slices; ++s) {
        u32 at = trans ? li * 32u + s : s * 32u + li;
        sg += part1[at];
        su += part2[at];
    }
    if (TWO) st(out, dt, p * n + c, swiglu_rounded(dt, sg, su));
    else st(out, dt, p * n + c, sg);
}

extern "C" __global__ void moe_gate_up_vec(const void* x, const void* w, const u32* route, void* act, u32 kdim, u32 n, u32 topk, u32 e, int trans, int da, int dw, int dt) {
    grouped_vec<true>(x, w, route, act, kdim, n, topk, e, trans, da, dw, dt);
}

extern "C" __global__ void moe_down_vec(const void* act, const void* w, const u32* route, void* y, u32 kdim, u32 n, u32 topk, u32 e, int trans, int da, int dw, int dt) {
    grouped_vec<false>(act, w, route, y, kdim, n, topk, e, trans, da, dw, dt);
}

extern "C" __global__ void moe_combine(const void* y, const u32* route, void* out, u64 total, u32 h, u32 k, u64 pairs, u32 e, int dt, int dout) {
    u64 i = global_index();
    if (i >= total) return;
    u64 t = i / h, c = i - t * h;
    float acc = 0.0f;
    for (u32 s = 0; s < k; ++s) {
        u64 p = t * k + s;
        // Unfused multiply-add, as the CPU oracle adds the rounded products.
        if (route[p] < e) acc = acc + __fmul_rn(bits_f32(route[pairs + p]), ld(y, dt, p * h + c));
    }
    st(out, dout, i, acc);
}
