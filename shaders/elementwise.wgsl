// A fused chain of elementwise ops: the program of program.wgsl run once per output element.
// P: [0] element count; the program area as program.wgsl describes.

@compute @workgroup_size(256)
fn elementwise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, run_program(i, 0.0));
}
