// Strided copy (permute, slice, concat): for every index of an iteration shape (rank 6),
// out[d_off + idx . d_strides] = a[s_off + idx . s_strides].
// P: [0] element count, [1] s_off, [2] d_off, [3..9] dims, [9..15] source strides,
// [15..21] destination strides.

fn offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var o = vec2<u32>(pu(1), pu(2));
    for (var d = 5; d >= 0; d = d - 1) {
        let dim = pu(3u + u32(d));
        let x = rem % dim;
        rem = rem / dim;
        o = o + x * vec2<u32>(pu(9u + u32(d)), pu(15u + u32(d)));
    }
    return o;
}

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let o = offsets(i);
    st_out(o.y, ld_a(o.x));
}

@compute @workgroup_size(256)
fn copy_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let o = offsets(i);
    sti_out(o.y, ldi_a(o.x));
}
