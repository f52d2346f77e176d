// RMSNorm over rows: out = x / sqrt(mean(x^2) + eps) * w. One workgroup per row. The family
// prefix says what x is (`x_at`), where w lives (`w_at`) and whether x is also written out
// (`put_side`): rms_norm reads x = a, w = b; add_rms_norm reads x = a + b rounded to a's dtype
// (the residual sum as stored), w = c, and its _side family also writes that sum.
// P: [0] rows, [1] row length C, [2] eps (f32 bits). Needs reduce.wgsl.

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let c = pu(1);
    let base = row * c;
    var ss = 0.0;
    for (var j = li; j < c; j = j + WG) {
        let x = x_at(base + j);
        ss = ss + x * x;
        put_side(base + j, x);
    }
    let inv = inverseSqrt(wg_sum(ss, li) / f32(c) + pf(2));
    for (var j = li; j < c; j = j + WG) {
        st_out(base + j, x_at(base + j) * inv * w_at(j));
    }
}
