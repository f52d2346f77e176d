// Fused attention, flash style: one workgroup per (head, block of R = 4 consecutive queries);
// keys in tiles of 256, one key per invocation for the scores of all R queries (each key row
// read once for the block), an online softmax per query (running max and sum, rescaled
// accumulators) so memory stays O(tile) for any sequence length; invocation c < Dv owns
// output column c of every query of the block. `mask_at` comes from the family prefix (the
// additive mask, or 0).
// P: [0] Hq, [1] T, [2] S, [3] D, [4] Dv, [5] q heads per kv head, [6] causal, [7] scale,
// [8] 1 to write the output tokens-first ([T, Hq, Dv] instead of [Hq, T, Dv]).
// Needs reduce.wgsl (for WG); D and Dv at most 256.
const R: u32 = 4u;
var<workgroup> qrows: array<f32, 1024>; // [R][256]
var<workgroup> probs4: array<vec4<f32>, 256>;
var<workgroup> red4: array<vec4<f32>, 256>;

fn wg_max4(v: vec4<f32>, li: u32) -> vec4<f32> {
    red4[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) { red4[li] = max(red4[li], red4[li + s]); }
        workgroupBarrier();
    }
    let r = red4[0];
    workgroupBarrier();
    return r;
}

fn wg_sum4(v: vec4<f32>, li: u32) -> vec4<f32> {
    red4[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (li < s) { red4[li] = red4[li] + red4[li + s]; }
        workgroupBarrier();
    }
    let r = red4[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let blk = group_index(wg, nwg);
    let t_ = pu(1);
    let blocks = (t_ + R - 1u) / R;
    if (blk >= pu(0) * blocks) { return; }
    let s_ = pu(2);
    let d = pu(3);
    let dv = pu(4);
    let head = blk / blocks;
    let t0 = (blk % blocks) * R;
    let kvh = head / pu(5);
    let scale = pf(7);
    // Keys each query of the block may see (0 for rows past T).
    var lim = vec4<u32>(0u);
    for (var r = 0u; r < R; r = r + 1u) {
        let t = t0 + r;
        if (t < t_) {
            lim[r] = s_;
            if (pu(6) == 1u) { lim[r] = min(s_, t + s_ - t_ + 1u); }
        }
        if (li < d) {
            var q = 0.0;
            if (t < t_) { q = ld_a((head * t_ + t) * d + li); }
            qrows[r * 256u + li] = q;
        }
    }
    workgroupBarrier();
    let seen = max(max(lim.x, lim.y), max(lim.z, lim.w));
    var m = vec4<f32>(-3.4028235e38);
    var l = vec4<f32>(0.0);
    var acc = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < seen; j0 = j0 + WG) {
        let j = j0 + li;
        var sc = vec4<f32>(-3.4028235e38);
        let live = vec4<u32>(j) < lim;
        if (j < seen) {
            var dot = vec4<f32>(0.0);
            let kb = (kvh * s_ + j) * d;
            for (var c = 0u; c < d; c = c + 1u) {
                let kv = ld_b(kb + c);
                dot = dot + kv * vec4<f32>(qrows[c], qrows[256u + c], qrows[512u + c], qrows[768u + c]);
            }
            for (var r = 0u; r < R; r = r + 1u) {
                if (live[r]) { sc[r] = dot[r] * scale + mask_at((t0 + r) * s_ + j); }
            }
        }
        let m_new = max(m, wg_max4(sc, li));
        let corr = exp(m - m_new);
        let p = select(vec4<f32>(0.0), exp(sc - m_new), live);
        probs4[li] = p;
        l = l * corr + wg_sum4(p, li);
        if (li < dv) {
            var a = acc * corr;
            let n = min(WG, seen - j0);
            for (var jj = 0u; jj < n; jj = jj + 1u) {
                let pj = probs4[jj];
                if (any(pj != vec4<f32>(0.0))) { a = a + pj * ld_c((kvh * s_ + j0 + jj) * dv + li); }
            }
            acc = a;
        }
        m = m_new;
        workgroupBarrier();
    }
    if (li < dv) {
        for (var r = 0u; r < R; r = r + 1u) {
            let t = t0 + r;
            var o = (head * t_ + t) * dv + li;
            if (pu(8) == 1u) { o = (t * pu(0) + head) * dv + li; }
            if (t < t_) { st_out(o, acc[r] / l[r]); }
        }
    }
}
