// Broadcasting elementwise ops of two inputs. P: [0] element count; [2..8] output dims
// (padded to rank 6 with leading 1s); [8..14] a's strides; [14..20] b's strides (0 where
// an operand is broadcast).

fn operand_offsets(i: u32) -> vec2<u32> {
    var rem = i;
    var o = vec2<u32>(0u, 0u);
    for (var d = 5; d >= 0; d = d - 1) {
        let dim = pu(2u + u32(d));
        let x = rem % dim;
        rem = rem / dim;
        o = o + x * vec2<u32>(pu(8u + u32(d)), pu(14u + u32(d)));
    }
    return o;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let o = operand_offsets(i);
    st_out(i, ld_a(o.x) + ld_b(o.y));
}

@compute @workgroup_size(256)
fn sub(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let o = operand_offsets(i);
    st_out(i, ld_a(o.x) - ld_b(o.y));
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let o = operand_offsets(i);
    st_out(i, ld_a(o.x) * ld_b(o.y));
}

@compute @workgroup_size(256)
fn div(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let o = operand_offsets(i);
    st_out(i, ld_a(o.x) / ld_b(o.y));
}

// silu(a) * b (SwiGLU), same shapes.
@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let g = ld_a(i);
    st_out(i, g / (1.0 + exp(-g)) * ld_b(i));
}
