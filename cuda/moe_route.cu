// Routing of the fused MoE op (no host synchronisation anywhere), as shaders/moe_route.wgsl.
//
// moe_route: one warp per token, 8 per block. Softmax of the router logits ([T, E], dtype dt)
// in f32, the top k experts by probability (ties to the lower index), weights renormalised over
// the chosen ones (summed best first) and rounded to dt. Output (u32): the expert of pair
// p = t * k + r at [p], the weight's f32 bits at [T * k + p].
//
// moe_align: one block. A counting sort of the (token, slot) pairs by expert, each expert's run
// padded to whole tiles of bm rows (vLLM's moe_align_block_size; 16 for moe.cu's GEMMs, 64 for
// moe_tc.cu's). Output plan (u32): [0] tiles
// used, [1 + tile] the tile's expert, [1 + MT + q] the pair at sorted row q (SENT on padding).
// MT, the most tiles any routing can need, sizes the GEMM grids; tiles past [0] exit at once.
// The order of pairs inside an expert's run varies between runs (shared atomics); every row is
// computed on its own, so results do not.
#define SENT 0xffffffffu
#define MAX_K 64
#define MAX_E 512
#define ROUTE_WARPS 8

__device__ __forceinline__ bool ranks_before(float pa, u32 ia, float pb, u32 ib) {
    return pa > pb || (pa == pb && ia < ib);
}

extern "C" __global__ void moe_route(const void* logits, u32* route, u64 tokens, u32 e, u32 k, int dt) {
    __shared__ float sp[ROUTE_WARPS][MAX_K];
    __shared__ u32 si[ROUTE_WARPS][MAX_K];
    u32 warp = threadIdx.x / 32u, lane = threadIdx.x % 32u;
    u64 t = ((u64)blockIdx.x + (u64)blockIdx.y * gridDim.x) * ROUTE_WARPS + warp;
    // Whole warps leave together, and nothing below synchronises more than a warp.
    if (t >= tokens) return;
    if (k > MAX_K) k = MAX_K;
    u64 base = t * e;
    float mx = bits_f32(0xff800000u);
    for (u32 j = lane; j < e; j += 32u) mx = fmaxf(mx, ld(logits, dt, base + j));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float z = 0.0f;
    for (u32 j = lane; j < e; j += 32u) z += expf(ld(logits, dt, base + j) - mx);
    for (int o = 16; o > 0; o >>= 1) z += __shfl_xor_sync(0xffffffffu, z, o);
    // Every lane must divide by the same bits.
    z = __shfl_sync(0xffffffffu, z, 0);
    mx = __shfl_sync(0xffffffffu, mx, 0);
    float pv = 0.0f;
    u32 pi = SENT;
    for (u32 r = 0; r < k; ++r) {
        float bv = -1.0f;
        u32 bi = SENT;
        for (u32 j = lane; j < e; j += 32u) {
            float p = expf(ld(logits, dt, base + j) - mx) / z;
            bool eligible = pi == SENT || ranks_before(pv, pi, p, j);
            if (eligible && (bi == SENT || ranks_before(p, j, bv, bi))) {
                bv = p;
                bi = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            u32 oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi != SENT && (bi == SENT || ranks_before(ov, oi, bv, bi))) {
                bv = ov;
                bi = oi;
            }
        }
        bv = __shfl_sync(0xffffffffu, bv, 0);
        bi = __shfl_sync(0xffffffffu, bi, 0);
        if (lane == 0u) {
            sp[warp][r] = bv;
            si[warp][r] = bi;
        }
        pv = bv;
        pi = bi;
    }
    __syncwarp();
    float sum = 0.0f;
    for (u32 r = 0; r < k; ++r) sum += sp[warp][r];
    u64 pairs = tokens * k;
    for (u32 r = lane; r < k; r += 32u) {
        u64 p = t * k + r;
        route[p] = si[warp][r];
        route[pairs + p] = f32_bits(round_to(dt, sp[warp][r] / sum));
    }
}

extern "C" __global__ void __launch_bounds__(1024) moe_align(const u32* route, u32* plan, u32 pairs, u32 e, u32 mt, u32 bm) {
    __shared__ u32 cnt[MAX_E];
    __shared__ u32 cur[MAX_E];
    __shared__ u32 first[MAX_E + 1];
    u32 li = threadIdx.x, nt = blockDim.x;
    for (u32 j = li; j < e; j += nt) {
        cnt[j] = 0u;
        cur[j] = 0u;
    }
    __syncthreads();
    // An expert id out of range (only from NaN logits) is left out of every tile.
    for (u32 p = li; p < pairs; p += nt) {
        u32 x = route[p];
        if (x < e) atomicAdd(&cnt[x], 1u);
    }
    __syncthreads();
    if (li == 0u) {
        u32 rows = 0u;
        for (u32 j = 0; j < e; ++j) {
            first[j] = rows;
            rows += (cnt[j] + bm - 1u) / bm * bm;
        }
        first[e] = rows;
        plan[0] = rows / bm;
    }
    __syncthreads();
    u32 total = first[e];
    // Each sorted row: its expert (binary search over the run starts: first[lo] <= q <
    // first[lo + 1]), written as the tile's expert at the tile's first row; SENT on padding.
    for (u32 q = li; q < total; q += nt) {
        u32 lo = 0u, hi = e;
        while (hi - lo > 1u) {
            u32 mid = (lo + hi) / 2u;
            if (first[mid] <= q) lo = mid; else hi = mid;
        }
        u32 slot = q - first[lo];
        if (slot % bm == 0u) plan[1u + q / bm] = lo;
        if (slot >= cnt[lo]) plan[1ull + mt + q] = SENT;
    }
    for (u32 p = li; p < pairs; p += nt) {
        u32 x = route[p];
        if (x >= e) continue;
        u32 q = first[x] + atomicAdd(&cur[x], 1u);
        plan[1ull + mt + q] = p;
    }
}
