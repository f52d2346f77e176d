// Routing of the fused MoE op (no host synchronisation anywhere).
//
// route: one invocation per token. Softmax of the router logits (a, [T, E]) in f32, the top k
// experts by probability (ties to the lower index), weights renormalised over the chosen ones
// and rounded to the logits' dtype. Output (u32): ids of pair p = t * k + r at [p], the
// weight's f32 bits at [T * k + p]. P: [0] T, [1] E, [2] k (<= 64).
//
// align: one workgroup. A counting sort of the (token, slot) pairs by expert, each expert's
// run padded to whole tiles of BM rows (vLLM's moe_align_block_size). Output plan (u32):
// [0] tiles used, [1 + tile] the tile's expert, [1 + MT + q] the pair at sorted row q (SENT
// for padding), [1 + MT + MT * BM + p] the sorted row of pair p. MT, the most tiles any
// routing can need, sizes the GEMM grids; tiles past [0] exit at once.
// P: [0] pairs, [1] E (<= 512), [2] MT.
const BM: u32 = 16u;
const SENT: u32 = 0xffffffffu;
const MAX_K: u32 = 64u;

fn ranks_before(pa: f32, ia: u32, pb: f32, ib: u32) -> bool {
    return pa > pb || (pa == pb && ia < ib);
}

@compute @workgroup_size(64)
fn route(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = group_index(wg, nwg) * 64u + li;
    let n_tok = pu(0);
    if (t >= n_tok) { return; }
    let e_ = pu(1);
    let k = min(pu(2), MAX_K);
    let base = t * e_;
    var mx = ld_a(base);
    for (var j = 1u; j < e_; j = j + 1u) { mx = max(mx, ld_a(base + j)); }
    var z = 0.0;
    for (var j = 0u; j < e_; j = j + 1u) { z = z + exp(ld_a(base + j) - mx); }
    var ids: array<u32, 64>;
    var ps: array<f32, 64>;
    var pv = 0.0;
    var pi = SENT;
    var sum = 0.0;
    for (var r = 0u; r < k; r = r + 1u) {
        var bv = -1.0;
        var bi = SENT;
        for (var j = 0u; j < e_; j = j + 1u) {
            let p = exp(ld_a(base + j) - mx) / z;
            let eligible = pi == SENT || ranks_before(pv, pi, p, j);
            if (eligible && (bi == SENT || ranks_before(p, j, bv, bi))) {
                bv = p;
                bi = j;
            }
        }
        ids[r] = bi;
        ps[r] = bv;
        sum = sum + bv;
        pv = bv;
        pi = bi;
    }
    for (var r = 0u; r < k; r = r + 1u) {
        let p = t * k + r;
        st_bits(p, ids[r]);
        st_bits(n_tok * k + p, bitcast<u32>(rnd_a(ps[r] / sum)));
    }
}

var<workgroup> cnt: array<atomic<u32>, 512>;
var<workgroup> cur: array<atomic<u32>, 512>;
var<workgroup> first: array<u32, 513>;

@compute @workgroup_size(256)
fn align(@builtin(local_invocation_index) li: u32) {
    let n = pu(0);
    let e_ = pu(1);
    let mt = pu(2);
    for (var j = li; j < e_; j = j + 256u) {
        atomicStore(&cnt[j], 0u);
        atomicStore(&cur[j], 0u);
    }
    workgroupBarrier();
    for (var p = li; p < n; p = p + 256u) { atomicAdd(&cnt[w_a(p)], 1u); }
    workgroupBarrier();
    if (li == 0u) {
        var rows = 0u;
        for (var j = 0u; j < e_; j = j + 1u) {
            first[j] = rows;
            rows = rows + (atomicLoad(&cnt[j]) + BM - 1u) / BM * BM;
        }
        first[e_] = rows;
        st_bits(0u, rows / BM);
    }
    workgroupBarrier();
    let total = first[e_];
    // Each sorted row: which expert owns it (binary search over the run starts), the tile's
    // expert at the tile's first row, SENT on padding rows.
    for (var q = li; q < total; q = q + 256u) {
        var lo = 0u;
        var hi = e_;
        while (hi - lo > 1u) {
            let mid = (lo + hi) / 2u;
            if (first[mid] <= q) { lo = mid; } else { hi = mid; }
        }
        let slot = q - first[lo];
        if (slot % BM == 0u) { st_bits(1u + q / BM, lo); }
        if (slot >= atomicLoad(&cnt[lo])) { st_bits(1u + mt + q, SENT); }
    }
    for (var p = li; p < n; p = p + 256u) {
        let e = w_a(p);
        let q = first[e] + atomicAdd(&cur[e], 1u);
        st_bits(1u + mt + q, p);
        st_bits(1u + mt + mt * BM + p, q);
    }
}
