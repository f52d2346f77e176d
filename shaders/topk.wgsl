// Top-k indices along rows (argmax is k = 1), largest first, ties to the lower index.
// One workgroup per row; k rounds, each picks the best element ranked after the previous
// pick. P: [0] rows, [1] row length C, [2] k. Needs reduce.wgsl.

@compute @workgroup_size(256)
fn top_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let c = pu(1);
    let k = pu(2);
    let base = row * c;
    var pv = 0.0;
    var pi = 0xffffffffu;
    for (var r = 0u; r < k; r = r + 1u) {
        var bv = 0.0;
        var bi = 0xffffffffu;
        for (var j = li; j < c; j = j + WG) {
            let v = ld_a(base + j);
            // Eligible: ranked strictly after the previous pick (everything in round 0).
            let eligible = pi == 0xffffffffu || ranks_before(pv, pi, v, j);
            if (eligible && ranks_before(v, j, bv, bi)) {
                bv = v;
                bi = j;
            }
        }
        let best = wg_best(bv, bi, li);
        pi = best;
        pv = ld_a(base + best);
        if (li == 0u) { sti_out(row * k + r, i32(best)); }
    }
}
