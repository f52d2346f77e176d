// Workgroup reductions shared by the row kernels (norms, softmax, top-k). Included after the
// prelude in families that need them; every caller runs them in workgroup-uniform control flow.
const WG: u32 = 256u;
var<workgroup> red_v: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;

fn wg_sum(v: f32, li: u32) -> f32 {
    red_v[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) { red_v[li] = red_v[li] + red_v[li + s]; }
        workgroupBarrier();
    }
    let r = red_v[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32, li: u32) -> f32 {
    red_v[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) { red_v[li] = max(red_v[li], red_v[li + s]); }
        workgroupBarrier();
    }
    let r = red_v[0];
    workgroupBarrier();
    return r;
}

// True when (v, i) ranks before (w, j): larger value first, ties to the lower index.
// An index of 0xffffffff marks "no candidate".
fn ranks_before(v: f32, i: u32, w: f32, j: u32) -> bool {
    if (i == 0xffffffffu) { return false; }
    if (j == 0xffffffffu) { return true; }
    return v > w || (v == w && i < j);
}

// The best (value, index) candidate of the workgroup; returns its index.
fn wg_best(v: f32, i: u32, li: u32) -> u32 {
    red_v[li] = v;
    red_i[li] = i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s && ranks_before(red_v[li + s], red_i[li + s], red_v[li], red_i[li])) {
            red_v[li] = red_v[li + s];
            red_i[li] = red_i[li + s];
        }
        workgroupBarrier();
    }
    let r = red_i[0];
    workgroupBarrier();
    return r;
}
