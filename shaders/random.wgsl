// Seeded random numbers (graph/random.rs defines them; the CPU oracle and cuda/random.cu
// compute the same): element i = offset + scale * (2u - 1), u = 24 hash bits of (seed, i).
// P: [0] element count, [1] seed low word, [2] seed high word, [3] offset, [4] scale.
// Element indices fit 32 bits here (the high index word is 0).

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn random(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let r = pcg(pcg(i ^ pu(1)) ^ pcg(pu(2))) >> 8u;
    let u = f32(r) * (1.0 / 16777216.0);
    st_out(i, pf(3) + pf(4) * (2.0 * u - 1.0));
}
