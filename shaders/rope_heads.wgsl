// Rotary embedding of x [T, H, D] (tables b = cos, c = sin [T, R/2]) written heads-first to
// [H, T, D]; with NORM a per-head RMSNorm (weight d [D]) first, its result rounded to x's
// dtype as the unfused graph stores it. One workgroup per (token, head) row.
// P: [0] rows T*H, [1] H, [2] D, [3] R/2, [4] 1 for GPT-J interleaved pairs, [5] eps bits,
// [6] T. Needs reduce.wgsl; NORM and norm_w come from the family's prefix.

@compute @workgroup_size(256)
fn rope_heads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = group_index(wg, nwg);
    if (row >= pu(0)) { return; }
    let h_ = pu(1);
    let d = pu(2);
    let half = pu(3);
    let t = row / h_;
    let h = row - t * h_;
    let base = row * d;
    var inv = 1.0;
    if (NORM) {
        var ss = 0.0;
        for (var j = li; j < d; j = j + WG) {
            let x = ld_a(base + j);
            ss = ss + x * x;
        }
        inv = inverseSqrt(wg_sum(ss, li) / f32(d) + pf(5));
    }
    let obase = (h * pu(6) + t) * d;
    for (var p = li; p < d / 2u; p = p + WG) {
        var i = 2u * p;
        var j = i + 1u;
        if (p < half && pu(4) == 0u) {
            i = p;
            j = p + half;
        }
        var xi = ld_a(base + i);
        var xj = ld_a(base + j);
        if (NORM) {
            xi = rnd_a(xi * inv * norm_w(i));
            xj = rnd_a(xj * inv * norm_w(j));
        }
        if (p < half) {
            let cs = ld_b(t * half + p);
            let sn = ld_c(t * half + p);
            st_out(obase + i, xi * cs - xj * sn);
            st_out(obase + j, xj * cs + xi * sn);
        } else {
            st_out(obase + i, xi);
            st_out(obase + j, xj);
        }
    }
}
