// Rotary embedding of x [T, H, D] by per-token tables cos, sin [T, R/2] (inputs b, c).
// One invocation per pair slot p in [0, D/2): slots below R/2 rotate, the rest copy.
// P: [0] slot count T*H*D/2, [1] H, [2] D, [3] R/2, [4] 1 for GPT-J interleaved pairs.

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let id = group_index(wg, nwg) * 256u + li;
    if (id >= pu(0)) { return; }
    let d = pu(2);
    let half = pu(3);
    let p = id % (d / 2u);
    let th = id / (d / 2u);
    let t = th / pu(1);
    let base = th * d;
    if (p < half) {
        var i = p;
        var j = p + half;
        if (pu(4) == 1u) {
            i = 2u * p;
            j = 2u * p + 1u;
        }
        let cs = ld_b(t * half + p);
        let sn = ld_c(t * half + p);
        let xi = ld_a(base + i);
        let xj = ld_a(base + j);
        st_out(base + i, xi * cs - xj * sn);
        st_out(base + j, xj * cs + xi * sn);
    } else {
        let i = 2u * half + 2u * (p - half);
        st_out(base + i, ld_a(base + i));
        st_out(base + i + 1u, ld_a(base + i + 1u));
    }
}
