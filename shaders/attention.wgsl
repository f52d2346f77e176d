// Fused attention, flash style: one workgroup per (head, query); keys in tiles of 256, one
// key per invocation for the scores, an online softmax (running max and sum, rescaled
// accumulators) so memory stays O(tile) for any sequence length; invocation c < Dv owns
// output column c. `mask_at` comes from the family prefix (the additive mask, or 0).
// P: [0] Hq, [1] T, [2] S, [3] D, [4] Dv, [5] q heads per kv head, [6] causal, [7] scale.
// Needs reduce.wgsl; D and Dv at most 256.
var<workgroup> qrow: array<f32, 256>;
var<workgroup> probs: array<f32, 256>;

@compute @workgroup_size(256)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    let t_ = pu(1);
    if (row >= pu(0) * t_) { return; }
    let s_ = pu(2);
    let d = pu(3);
    let dv = pu(4);
    let t = row % t_;
    let kvh = (row / t_) / pu(5);
    let scale = pf(7);
    if (li < d) { qrow[li] = ld_a(row * d + li); }
    workgroupBarrier();
    var limit = s_;
    if (pu(6) == 1u) { limit = min(s_, t + s_ - t_ + 1u); }
    var m = -3.4028235e38;
    var l = 0.0;
    var acc = 0.0;
    for (var j0 = 0u; j0 < s_; j0 = j0 + WG) {
        let j = j0 + li;
        var sc = -3.4028235e38;
        if (j < limit) {
            var dot = 0.0;
            let kb = (kvh * s_ + j) * d;
            for (var c = 0u; c < d; c = c + 1u) { dot = dot + qrow[c] * ld_b(kb + c); }
            sc = dot * scale + mask_at(t * s_ + j);
        }
        let m_new = max(m, wg_max(sc, li));
        let corr = exp(m - m_new);
        var p = 0.0;
        if (j < limit) { p = exp(sc - m_new); }
        probs[li] = p;
        l = l * corr + wg_sum(p, li);
        if (li < dv) {
            var a = acc * corr;
            let n = min(WG, s_ - j0);
            for (var jj = 0u; jj < n; jj = jj + 1u) {
                let pj = probs[jj];
                if (pj != 0.0) { a = a + pj * ld_c((kvh * s_ + j0 + jj) * dv + li); }
            }
            acc = a;
        }
        m = m_new;
        workgroupBarrier();
    }
    if (li < dv) { st_out(row * dv + li, acc / l); }
}
