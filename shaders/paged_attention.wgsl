// Attention over a paged KV cache (Op::PagedAttention): one workgroup per (token, query head);
// keys in tiles of 256, one key per invocation (a cached key's slot found through the
// token's block table, a new key read from this batch's rows), an online softmax over the
// tiles; invocation c < Dv owns output column c. Needs reduce.wgsl; D and Dv at most 256.
// Bindings: a q [T, Hq, D], b k_new [T, Hkv, D], c v_new [T, Hkv, Dv], d k_pool, e v_pool
// [slots, Hkv, D|Dv], f index (i32) [T, 2 + blocks]: past, start, block table.
// P: [0] T, [1] Hq, [2] Hkv, [3] D, [4] Dv, [5] block size, [6] index columns, [7] scale.
var<workgroup> qrow: array<f32, 256>;
var<workgroup> probs: array<f32, 256>;

// Row of key j for token t: a pool slot (cached keys) or a row of the batch (new keys).
fn key_row(t: u32, j: u32, past: u32, start: u32) -> u32 {
    if (j < past) {
        let bs = pu(5);
        return u32(ldi_f(t * pu(6) + 2u + j / bs)) * bs + j % bs;
    }
    return start + (j - past);
}

@compute @workgroup_size(256)
fn paged_attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let blk = group_index(wg, nwg);
    let hq = pu(1);
    if (blk >= pu(0) * hq) { return; }
    let t = blk / hq;
    let h = blk % hq;
    let hkv = pu(2);
    let d = pu(3);
    let dv = pu(4);
    let g = h / (hq / hkv);
    let past = u32(ldi_f(t * pu(6)));
    let start = u32(ldi_f(t * pu(6) + 1u));
    let total = past + t - start + 1u;
    if (li < d) { qrow[li] = ld_a((t * hq + h) * d + li); }
    workgroupBarrier();
    var m = -3.4028235e38;
    var l = 0.0;
    var acc = 0.0;
    for (var j0 = 0u; j0 < total; j0 = j0 + WG) {
        let j = j0 + li;
        let live = j < total;
        var sc = -3.4028235e38;
        if (live) {
            let kb = (key_row(t, j, past, start) * hkv + g) * d;
            var dot = 0.0;
            if (j < past) {
                for (var c = 0u; c < d; c = c + 1u) { dot = dot + ld_d(kb + c) * qrow[c]; }
            } else {
                for (var c = 0u; c < d; c = c + 1u) { dot = dot + ld_b(kb + c) * qrow[c]; }
            }
            sc = dot * pf(7);
        }
        let m_new = max(m, wg_max(sc, li));
        let corr = exp(m - m_new);
        var p = 0.0;
        if (live) { p = exp(sc - m_new); }
        probs[li] = p;
        l = l * corr + wg_sum(p, li);
        if (li < dv) {
            var a = acc * corr;
            let n = min(WG, total - j0);
            for (var jj = 0u; jj < n; jj = jj + 1u) {
                let jg = j0 + jj;
                let vb = (key_row(t, jg, past, start) * hkv + g) * dv + li;
                var v = 0.0;
                if (jg < past) { v = ld_e(vb); } else { v = ld_c(vb); }
                a = a + probs[jj] * v;
            }
            acc = a;
        }
        m = m_new;
        workgroupBarrier();
    }
    if (li < dv) { st_out((t * hq + h) * dv + li, acc / l); }
}
