// RMSNorm over rows: out = x / sqrt(mean(x^2) + eps) * w. One workgroup per row.
// P: [0] rows, [1] row length C, [2] eps (f32 bits). Needs reduce.wgsl.

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let c = pu(1);
    let base = row * c;
    var ss = 0.0;
    for (var j = li; j < c; j = j + WG) {
        let x = ld_a(base + j);
        ss = ss + x * x;
    }
    let inv = inverseSqrt(wg_sum(ss, li) / f32(c) + pf(2));
    for (var j = li; j < c; j = j + WG) {
        st_out(base + j, ld_a(base + j) * inv * ld_b(j));
    }
}
