// Softmax over rows, in f32. One workgroup per row. P: [0] rows, [1] row length C.
// Needs reduce.wgsl.

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let c = pu(1);
    let base = row * c;
    var m = -3.4028235e38;
    for (var j = li; j < c; j = j + WG) { m = max(m, ld_a(base + j)); }
    let mx = wg_max(m, li);
    var s = 0.0;
    for (var j = li; j < c; j = j + WG) { s = s + exp(ld_a(base + j) - mx); }
    let inv = 1.0 / wg_sum(s, li);
    for (var j = li; j < c; j = j + WG) {
        st_out(base + j, exp(ld_a(base + j) - mx) * inv);
    }
}
