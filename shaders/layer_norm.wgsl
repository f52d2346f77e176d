// LayerNorm over rows: out = (x - mean) / sqrt(var + eps) * w + b, two passes for a stable
// variance. One workgroup per row. P: [0] rows, [1] row length C, [2] eps (f32 bits).
// Needs reduce.wgsl.

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let c = pu(1);
    let base = row * c;
    var s = 0.0;
    for (var j = li; j < c; j = j + WG) { s = s + ld_a(base + j); }
    let mean = wg_sum(s, li) / f32(c);
    var v = 0.0;
    for (var j = li; j < c; j = j + WG) {
        let d = ld_a(base + j) - mean;
        v = v + d * d;
    }
    let inv = inverseSqrt(wg_sum(v, li) / f32(c) + pf(2));
    for (var j = li; j < c; j = j + WG) {
        st_out(base + j, (ld_a(base + j) - mean) * inv * ld_b(j) + ld_c(j));
    }
}
