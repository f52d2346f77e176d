// Elementwise ops of one input. P: [0] element count, [1] f32 parameter (scale factor).

fn gelu_tanh(x: f32) -> f32 {
    // tanh saturates in f32 long before |u| = 15; clamping avoids inf/inf in tanh's expansion.
    let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
    return 0.5 * x * (1.0 + tanh(u));
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under f32 resolution
// of the GELU output); WGSL has no erf.
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return select(y, -y, x < 0.0);
}

@compute @workgroup_size(256)
fn gelu_erf(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let x = ld_a(i);
    st_out(i, 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476)));
}

@compute @workgroup_size(256)
fn silu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let x = ld_a(i);
    st_out(i, x / (1.0 + exp(-x)));
}

@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, gelu_tanh(ld_a(i)));
}

@compute @workgroup_size(256)
fn exp_op(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, exp(ld_a(i)));
}

@compute @workgroup_size(256)
fn neg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, -ld_a(i));
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, ld_a(i) * pf(1));
}

// Float input, or any output that is float: goes through f32 (exact for every 16-bit float).
@compute @workgroup_size(256)
fn cast_float(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    st_out(i, ld_a(i));
}

// Integer to integer: bit-exact for every 32-bit value.
@compute @workgroup_size(256)
fn cast_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    sti_out(i, ldi_a(i));
}
