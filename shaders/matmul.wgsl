// Batched matmul, f32 accumulation. 64x64 output tiles, 16x16 invocations with 4x4 outputs
// each, K in steps of 16 through workgroup memory.
// P: [0] M, [1] N, [2] K, [3] batch count, [4] output batches per b batch, [5] 1 when b is
// [N, K] (weights as stored), [6] b's batch stride in elements (0 when b is shared),
// [7] output batches per a batch, [8] a's batch stride (0 when a is shared). `epi(i, v)`
// from the family prefix maps each result before it is stored (identity, or an epilogue
// program over extra inputs c, d: see program.wgsl).
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> ta: array<f32, 1024>; // [TM][TK]
var<workgroup> tb: array<f32, 1024>; // [TK][TN]

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m_ = pu(0);
    let n_ = pu(1);
    let k_ = pu(2);
    let a_off = (wg.z / pu(7)) * pu(8);
    let b_off = (wg.z / pu(4)) * pu(6);
    let trans = pu(5) == 1u;
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    // Four output rows of four columns each, as vectors (no dynamically indexed private array,
    // which compilers move out of registers).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k_; k0 = k0 + TK) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + e * 256u;
            let am = idx / TK;
            let ak = idx % TK;
            var va = 0.0;
            if (row0 + am < m_ && k0 + ak < k_) { va = ld_a(a_off + (row0 + am) * k_ + k0 + ak); }
            ta[idx] = va;
            var vb = 0.0;
            if (trans) {
                // Consecutive invocations read consecutive k of one weight row.
                let bn = idx / TK;
                let bk = idx % TK;
                if (col0 + bn < n_ && k0 + bk < k_) { vb = ld_b(b_off + (col0 + bn) * k_ + k0 + bk); }
                tb[bk * TN + bn] = vb;
            } else {
                let bk = idx / TN;
                let bn = idx % TN;
                if (col0 + bn < n_ && k0 + bk < k_) { vb = ld_b(b_off + (k0 + bk) * n_ + col0 + bn); }
                tb[idx] = vb;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let bo = kk * TN + lid.x * 4u;
            let bv = vec4<f32>(tb[bo], tb[bo + 1u], tb[bo + 2u], tb[bo + 3u]);
            let ao = lid.y * 4u * TK + kk;
            acc0 = acc0 + ta[ao] * bv;
            acc1 = acc1 + ta[ao + TK] * bv;
            acc2 = acc2 + ta[ao + 2u * TK] * bv;
            acc3 = acc3 + ta[ao + 3u * TK] * bv;
        }
        workgroupBarrier();
    }
    let c_off = wg.z * m_ * n_;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let gm = row0 + lid.y * 4u + i;
        var r = acc0;
        if (i == 1u) { r = acc1; }
        if (i == 2u) { r = acc2; }
        if (i == 3u) { r = acc3; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let gn = col0 + lid.x * 4u + j;
            if (gm < m_ && gn < n_) {
                let o = c_off + gm * n_ + gn;
                st_out(o, epi(o, r[j]));
            }
        }
    }
}

// Few-row path (decode, M <= 4): 8 output columns per workgroup, 32 invocations per column
// striding over K (consecutive invocations read consecutive weights), reduced through
// workgroup memory. Grid: ceil(N / 8) workgroups (2-D, linearised) by batch * M in z.
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m_ = pu(0);
    let n_ = pu(1);
    let k_ = pu(2);
    let row = wg.z;
    let batch = row / m_;
    let a_off = (batch / pu(7)) * pu(8) + (row % m_) * k_;
    let b_off = (batch / pu(4)) * pu(6);
    let n = group_index(wg, nwg) * 8u + li / 32u;
    let lane = li % 32u;
    var acc = 0.0;
    if (n < n_) {
        if (pu(5) == 1u) {
            for (var k = lane; k < k_; k = k + 32u) { acc = acc + ld_a(a_off + k) * ld_b(b_off + n * k_ + k); }
        } else {
            for (var k = lane; k < k_; k = k + 32u) { acc = acc + ld_a(a_off + k) * ld_b(b_off + k * n_ + n); }
        }
    }
    part[li] = acc;
    workgroupBarrier();
    for (var s = 16u; s > 0u; s = s >> 1u) {
        if (lane < s) { part[li] = part[li] + part[li + s]; }
        workgroupBarrier();
    }
    if (lane == 0u && n < n_) { st_out(row * n_ + n, epi(row * n_ + n, part[li])); }
}
