// Index reads. An index out of range yields NaN (the CPU oracle reports an error instead).

// Row gather: out[n, c] = a[b[n], c]. P: [0] element count N*C, [1] C, [2] table rows R.
@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let c = pu(1);
    let r = ldi_b(i / c);
    if (r < 0 || u32(r) >= pu(2)) {
        st_out(i, bitcast<f32>(0x7fc00000u));
        return;
    }
    st_out(i, ld_a(u32(r) * c + i % c));
}

// Take along the last axis: out[r, j] = a[r, b[r, j]]. P: [0] element count, [1] C, [2] k.
@compute @workgroup_size(256)
fn take_along(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let c = pu(1);
    let j = ldi_b(i);
    if (j < 0 || u32(j) >= c) {
        st_out(i, bitcast<f32>(0x7fc00000u));
        return;
    }
    st_out(i, ld_a((i / pu(2)) * c + u32(j)));
}
