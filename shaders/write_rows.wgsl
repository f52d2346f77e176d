// Op::WriteRows in place: rows a [N, C] to rows b[i] of out [R, C]; other rows untouched.
// P: [0] row elements N*C, [1] C, [2] R.

@compute @workgroup_size(256)
fn write_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let c = pu(1);
    let r = ldi_b(i / c);
    if (r < 0 || u32(r) >= pu(2)) { return; }
    st_out(u32(r) * c + i % c, ld_a(i));
}
