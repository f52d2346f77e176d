// RMSNorm of a sum: s = a + b (rounded to a's dtype, as the residual stream is stored),
// out = s / sqrt(mean(s^2) + eps) * w; the _side family also writes s. One workgroup per row.
// P: [0] rows, [1] row length C, [2] eps (f32 bits). Needs reduce.wgsl.

@compute @workgroup_size(256)
fn add_rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let c = pu(1);
    let base = row * c;
    var ss = 0.0;
    for (var j = li; j < c; j = j + WG) {
        let x = rnd_a(ld_a(base + j) + ld_b(base + j));
        ss = ss + x * x;
        put_side(base + j, x);
    }
    let inv = inverseSqrt(wg_sum(ss, li) / f32(c) + pf(2));
    for (var j = li; j < c; j = j + WG) {
        let x = rnd_a(ld_a(base + j) + ld_b(base + j));
        st_out(base + j, x * inv * ld_c(j));
    }
}
