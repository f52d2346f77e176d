// Weight-only quantized matmul (Op::QMatMul, formats in src/quant/mod.rs): y[m, n] =
// sum_k x[m, k] * code(n, k) * scale[n, k / group], f32 accumulation. a = x [M, K] (float),
// b = codes [N, K / PER] (u32 words, PER codes each, little-endian), c = scales [N, K / group]
// (f16; f32 for FP8; NVFP4: E4M3 bytes, four a word; Q4z: u32 words, the f16 scale in the low
// half, the zero point in bits 16..24). The family prefix sets BITS (8: int8 codes; 4: unsigned
// codes biased by 8), FP8 (8-bit E4M3 codes), NVFP4 (E2M1 codes, the global scale d [B] applied
// to each output by glob), ZP (Q4z: unsigned codes less their group's zero point). Codes are dequantized in registers or workgroup
// memory; no full-precision weight is ever written.
// A group is a multiple of PER, so a word's codes share one scale.
// P: [0] M, [1] N, [2] K, [3] groups per row (K / group), [4] group; qmatvec's own [5]-[7];
// [8] x's stride between weights of a stack (0: they share x). A stack of weights (MoE experts:
// codes [B, N, K / PER], scales [B, N, K / group], out [B, M, N]) is the grid's z.
const PER: u32 = 32u / BITS;

// Codes 4q .. 4q + 3 of word w as values (q is 0 for Q8 / FP8, 0 or 1 for Q4).
fn dq4(w: u32, q: u32) -> vec4<f32> {
    if (NVFP4) {
        let s = q * 16u;
        return vec4<f32>(e2m1(w >> s), e2m1(w >> (s + 4u)), e2m1(w >> (s + 8u)), e2m1(w >> (s + 12u)));
    }
    if (FP8) {
        return vec4<f32>(e4m3(w & 255u), e4m3((w >> 8u) & 255u), e4m3((w >> 16u) & 255u), e4m3(w >> 24u));
    }
    if (BITS == 8u) {
        // Move each byte to the top, then shift back arithmetically: int8 sign extension.
        let hi = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u));
        return vec4<f32>(hi >> vec4<u32>(24u));
    }
    let sh = vec4<u32>(0u, 4u, 8u, 12u) + vec4<u32>(q * 16u);
    let c = vec4<f32>((vec4<u32>(w) >> sh) & vec4<u32>(15u));
    if (ZP) { return c; } // less the group's zero_at, by the caller
    return c - vec4<f32>(8.0);
}

// Group i's zero point (Q4z; 0 for the other formats).
fn zero_at(i: u32) -> f32 {
    if (ZP) { return f32((w_c(i) >> 16u) & 255u); }
    return 0.0;
}

// Tiled path (prefill): 64 x 64 output tiles, 16 x 16 invocations with 4 x 4 outputs each, K in
// steps of TK. Each step dequantizes a [TN, TK] tile of codes (one or two words per invocation,
// times their group's scale) into workgroup memory next to the [TM, TK] tile of x.
// Grid: (ceil(N / 64), ceil(M / 64)). 16 KiB of workgroup memory (the WebGPU minimum), as the
// few-row path's.
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 32u;
var<workgroup> ta: array<f32, 2048>; // [TM][TK]
var<workgroup> tb: array<f32, 2048>; // [TK][TN], dequantized weights

@compute @workgroup_size(16, 16)
fn qmatmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m_ = pu(0);
    let n_ = pu(1);
    let k_ = pu(2);
    let groups = pu(3);
    let group = pu(4);
    let words = k_ / PER;
    let xo = wg.z * pu(8);
    let co = wg.z * n_ * words;
    let so = wg.z * n_ * groups;
    let oo = wg.z * m_ * n_;
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k_; k0 = k0 + TK) {
        for (var e = 0u; e < TM * TK / 256u; e = e + 1u) {
            let idx = li + e * 256u;
            let am = idx / TK;
            let ak = idx % TK;
            var va = 0.0;
            if (row0 + am < m_ && k0 + ak < k_) { va = ld_a(xo + (row0 + am) * k_ + k0 + ak); }
            ta[idx] = va;
        }
        // TN * TK / PER words: 512 for Q8 (two per invocation), 256 for Q4 (one). Consecutive
        // invocations read consecutive words of one weight row.
        for (var e = 0u; e < TN * TK / PER / 256u; e = e + 1u) {
            let idx = li + e * 256u;
            let bn = idx / (TK / PER);
            let bw = idx % (TK / PER);
            let n = col0 + bn;
            let kw = k0 + bw * PER;
            var word = 0u;
            var s = 0.0;
            var z = 0.0;
            // K is a multiple of PER: a word is wholly inside K or wholly past it.
            if (n < n_ && kw < k_) {
                word = w_b(co + n * words + kw / PER);
                s = scale_at(so + n * groups + kw / group);
                z = zero_at(so + n * groups + kw / group);
            }
            for (var q = 0u; q < PER / 4u; q = q + 1u) {
                let v = (dq4(word, q) - z) * s;
                let at = (bw * PER + q * 4u) * TN + bn;
                tb[at] = v.x;
                tb[at + TN] = v.y;
                tb[at + 2u * TN] = v.z;
                tb[at + 3u * TN] = v.w;
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
    for (var i = 0u; i < 4u; i = i + 1u) {
        let gm = row0 + lid.y * 4u + i;
        var r = acc0;
        if (i == 1u) { r = acc1; }
        if (i == 2u) { r = acc2; }
        if (i == 3u) { r = acc3; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let gn = col0 + lid.x * 4u + j;
            if (gm < m_ && gn < n_) { st_out(oo + gm * n_ + gn, r[j] * glob(wg.z)); }
        }
    }
}

// Few-row path (decode, M <= 8; memory-bound GEMV): 8 outputs n per workgroup, 32 invocations
// per n. K goes in chunks of P[5] inputs: the workgroup first converts x's chunk (all M rows)
// to f32 in workgroup memory, shared by its 8 outputs; then each invocation takes runs of P[6]
// consecutive code words (16 bytes when the group allows; a run never straddles a group, so one
// scale serves it), decodes each word once and applies it to all M rows (two vec4
// accumulators: rows 0-3, 4-7). Finally each n's 32 partial sums are reduced in workgroup
// memory. P[7]: 1 / (words per group) as f32 bits. Grid: ceil(N / 8) workgroups (2-D,
// linearised).
var<workgroup> xs: array<vec4<f32>, 1024>; // x chunk [M][P[5] / 4]; then the reduction scratch

// Scale i as f32, branch-free (the prelude's ld_c branches per value), exact like it: f16
// subnormals via an integer, normals by re-biasing the exponent, infinities and NaN kept.
fn scale_at(i: u32) -> f32 {
    if (FP8) { return ld_c(i); } // f32 scales
    if (NVFP4) { return e4m3((w_c(i >> 2u) >> ((i & 3u) * 8u)) & 255u); } // E4M3 bytes
    var h = (w_c(i >> 1u) >> ((i & 1u) * 16u)) & 0xffffu;
    if (ZP) { h = w_c(i) & 0xffffu; } // the low half of a (scale, zero) word
    let e = h & 0x7c00u;
    let normal = bitcast<f32>(((h & 0x7fffu) << 13u) + 0x38000000u);
    let sub = f32(h & 0x3ffu) * 5.9604645e-8;
    let special = bitcast<f32>(0x7f800000u | ((h & 0x3ffu) << 13u));
    let mag = select(select(normal, sub, e == 0u), special, e == 0x7c00u);
    return bitcast<f32>(bitcast<u32>(mag) | ((h & 0x8000u) << 16u));
}

// One row (the usual decode step) has its own entry point: with the row count a constant, the
// row tests below fold away, which CPU implementations (lavapipe) otherwise pay per word.
@compute @workgroup_size(256)
fn qmatvec1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    gemv(wg, nwg, li, 1u);
}

@compute @workgroup_size(256)
fn qmatvec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    gemv(wg, nwg, li, pu(0));
}

fn gemv(wg: vec3<u32>, nwg: vec3<u32>, li: u32, m_: u32) {
    let n_ = pu(1);
    let k_ = pu(2);
    let groups = pu(3);
    let kc = pu(5);
    let run = pu(6);
    let inv_wpg = pf(7);
    let words = k_ / PER;
    let xo = wg.z * pu(8);
    let co = wg.z * n_ * words;
    let so = wg.z * n_ * groups;
    let oo = wg.z * m_ * n_;
    let n = group_index(wg, nwg) * 8u + li / 32u;
    let lane = li % 32u;
    let row4 = kc / 4u;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k_; k0 = k0 + kc) {
        // K and kc are multiples of 4 (of PER), so chunks hold whole vec4s and whole words.
        let q4 = min(kc, k_ - k0) / 4u;
        for (var i = li; i < m_ * q4; i = i + 256u) {
            let r = i / q4;
            let c = i - r * q4;
            let b = xo + r * k_ + k0 + c * 4u;
            xs[r * row4 + c] = vec4<f32>(ld_a(b), ld_a(b + 1u), ld_a(b + 2u), ld_a(b + 3u));
        }
        workgroupBarrier();
        if (n < n_) {
            let w0 = k0 / PER;
            for (var u = lane * run; u < q4 * 4u / PER; u = u + 32u * run) {
                // Word index / words per group by f32, no integer divide: exact for indices
                // below 2^21 (the host checks), where the two roundings stay under the 0.5 / wpg
                // distance of (index + 0.5) / wpg from an integer (checked exhaustively).
                let g = u32((f32(w0 + u) + 0.5) * inv_wpg);
                let s = scale_at(so + n * groups + g);
                let z = zero_at(so + n * groups + g);
                for (var t = 0u; t < run; t = t + 1u) {
                    let word = w_b(co + n * words + w0 + u + t);
                    for (var q = 0u; q < PER / 4u; q = q + 1u) {
                        let v = (dq4(word, q) - z) * s;
                        let i = (u + t) * (PER / 4u) + q;
                        // Row bounds are uniform across the workgroup (no divergence), and
                        // nested so that one row (decode) tests one of them.
                        lo.x = lo.x + dot(xs[i], v);
                        if (m_ > 1u) {
                            lo.y = lo.y + dot(xs[row4 + i], v);
                            if (m_ > 2u) {
                                lo.z = lo.z + dot(xs[2u * row4 + i], v);
                                if (m_ > 3u) {
                                    lo.w = lo.w + dot(xs[3u * row4 + i], v);
                                    if (m_ > 4u) {
                                        hi.x = hi.x + dot(xs[4u * row4 + i], v);
                                        if (m_ > 5u) { hi.y = hi.y + dot(xs[5u * row4 + i], v); }
                                        if (m_ > 6u) { hi.z = hi.z + dot(xs[6u * row4 + i], v); }
                                        if (m_ > 7u) { hi.w = hi.w + dot(xs[7u * row4 + i], v); }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        workgroupBarrier();
    }
    xs[li] = lo;
    xs[256u + li] = hi;
    workgroupBarrier();
    for (var st = 16u; st > 0u; st = st >> 1u) {
        if (lane < st) {
            xs[li] = xs[li] + xs[li + st];
            xs[256u + li] = xs[256u + li] + xs[256u + li + st];
        }
        workgroupBarrier();
    }
    if (lane < m_ && n < n_) {
        let base = li - lane;
        let v = select(xs[256u + base][lane & 3u], xs[base][lane & 3u], lane < 4u);
        st_out(oo + lane * n_ + n, v * glob(wg.z));
    }
}
