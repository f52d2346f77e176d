// Row scatter in two dispatches: scatter_copy copies the base (a) to out, then scatter_rows
// writes (or adds) the rows c at the distinct indices b.
// P: [0] base elements R*C, [1] row elements N*C, [2] C, [3] R, [4] 1 to accumulate.

@compute @workgroup_size(256)
fn scatter_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, ld_a(i));
}

@compute @workgroup_size(256)
fn scatter_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(1)) { return; }
    let c = pu(2);
    let r = ldi_b(i / c);
    if (r < 0 || u32(r) >= pu(3)) { return; }
    let dst = u32(r) * c + i % c;
    var v = ld_c(i);
    if (pu(4) == 1u) { v = v + ld_a(dst); }
    st_out(dst, v);
}
