// The grouped expert GEMMs of the fused MoE over weight-only quantized experts (Op::QMoe):
// moe.wgsl's gate_up / down kernels (tiled, over the plan of moe_route.wgsl's align) and
// gate_up_vec / down_vec (one routed pair per workgroup row, decode), each weight decoded from
// its code word (b, u32) and group scale (c, f16) as it is read; no full-precision weight is
// written. The family prefix sets BITS (8: int8 codes; 4: codes biased by 8) and FP8 (E4M3
// codes, f32 scales). Stacks are
// [E, out, in]: gate_up's 2N rows are the gate rows then the up rows.
// a = x (gate_up: token rows) or act (down: pair or sorted rows); d = route (vec: expert of
// each pair) or plan (tiled). P: [0] K (inner), [1] N (outputs), [2] top_k, [3] MT, [4] group,
// [5] 1 for gate_up. The combine is moe.wgsl's.
const PER: u32 = 32u / BITS;
const BM: u32 = 16u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const SENT: u32 = 0xffffffffu;
var<workgroup> xs: array<f32, 256>; // [BM][BK]
var<workgroup> w1: array<f32, 1024>; // [BK][BN]
var<workgroup> w2: array<f32, 1024>; // [BK][BN], the up half in gate_up

// Code j of a word as its value.
fn code_at(word: u32, j: u32) -> f32 {
    if (FP8) {
        return e4m3((word >> (8u * j)) & 255u);
    }
    if (BITS == 8u) {
        return f32(bitcast<i32>(word << (24u - 8u * j)) >> 24u);
    }
    return f32(i32((word >> (4u * j)) & 15u) - 8);
}

// Weight (row, input kk) of the stack (rows counted over all experts).
fn wq(row: u32, kk: u32) -> f32 {
    let k_ = pu(0);
    let group = pu(4);
    let word = w_b(row * (k_ / PER) + kk / PER);
    return code_at(word, kk % PER) * ld_c(row * (k_ / group) + kk / group);
}

fn load_weights(e: u32, k0: u32, col0: u32, li: u32, two: bool) {
    let k_ = pu(0);
    let n_ = pu(1);
    let rows = select(n_, 2u * n_, two);
    for (var r = 0u; r < 4u; r = r + 1u) {
        let idx = li + r * 256u;
        let bn = idx / BK;
        let bk = idx % BK;
        var g = 0.0;
        var u = 0.0;
        if (col0 + bn < n_ && k0 + bk < k_) {
            let c = col0 + bn;
            g = wq(e * rows + c, k0 + bk);
            if (two) { u = wq(e * rows + n_ + c, k0 + bk); }
        }
        w1[bk * BN + bn] = g;
        w2[bk * BN + bn] = u;
    }
}

fn grouped(wg: vec3<u32>, lid: vec3<u32>, li: u32) {
    let tile = wg.y;
    if (tile >= w_d(0u)) { return; }
    let k_ = pu(0);
    let n_ = pu(1);
    let topk = pu(2);
    let mt = pu(3);
    let two = pu(5) == 1u;
    let e = w_d(1u + tile);
    let col0 = wg.x * BN;
    let lr = li / BK;
    let lk = li % BK;
    let q_load = tile * BM + lr;
    let pair = w_d(1u + mt + q_load);
    let arow = select(q_load, pair / topk, two);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k_; k0 = k0 + BK) {
        var xv = 0.0;
        if (pair != SENT && k0 + lk < k_) { xv = ld_a(arow * k_ + k0 + lk); }
        xs[li] = xv;
        load_weights(e, k0, col0, li, two);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let v = xs[lid.y * BK + kk];
            let o = kk * BN + lid.x * 4u;
            acc1 = acc1 + v * vec4<f32>(w1[o], w1[o + 1u], w1[o + 2u], w1[o + 3u]);
            acc2 = acc2 + v * vec4<f32>(w2[o], w2[o + 1u], w2[o + 2u], w2[o + 3u]);
        }
        workgroupBarrier();
    }
    let q = tile * BM + lid.y;
    if (w_d(1u + mt + q) == SENT) { return; }
    for (var j = 0u; j < 4u; j = j + 1u) {
        let c = col0 + lid.x * 4u + j;
        if (c < n_) {
            if (two) {
                let g = rnd_out(acc1[j]);
                st_out(q * n_ + c, g / (1.0 + exp(-g)) * rnd_out(acc2[j]));
            } else {
                st_out(q * n_ + c, acc1[j]);
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn gate_up(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    grouped(wg, lid, li);
}

@compute @workgroup_size(16, 16)
fn down(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    grouped(wg, lid, li);
}

var<workgroup> part1: array<f32, 256>;
var<workgroup> part2: array<f32, 256>;

// Dot product of a's row `arow` with the stack's row `row`, one code word per step: the word
// decoded once, its sum times its group's scale.
fn row_dot(arow: u32, row: u32, lane: u32) -> f32 {
    let k_ = pu(0);
    let group = pu(4);
    let words = k_ / PER;
    var acc = 0.0;
    for (var u = lane; u < words; u = u + 32u) {
        let word = w_b(row * words + u);
        var part = 0.0;
        for (var j = 0u; j < PER; j = j + 1u) {
            part = part + ld_a(arow * k_ + u * PER + j) * code_at(word, j);
        }
        acc = acc + part * ld_c(row * (k_ / group) + u * PER / group);
    }
    return acc;
}

fn grouped_vec(wg: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let n_ = pu(1);
    let topk = pu(2);
    let two = pu(5) == 1u;
    let p = wg.z;
    let e = w_d(p);
    let arow = select(p, p / topk, two);
    let rows = select(n_, 2u * n_, two);
    let n = group_index(wg, nwg) * 8u + li / 32u;
    let lane = li % 32u;
    var g = 0.0;
    var u = 0.0;
    if (n < n_) {
        g = row_dot(arow, e * rows + n, lane);
        if (two) { u = row_dot(arow, e * rows + n_ + n, lane); }
    }
    part1[li] = g;
    part2[li] = u;
    workgroupBarrier();
    for (var s = 16u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            part1[li] = part1[li] + part1[li + s];
            part2[li] = part2[li] + part2[li + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && n < n_) {
        if (two) {
            let gg = rnd_out(part1[li]);
            st_out(p * n_ + n, gg / (1.0 + exp(-gg)) * rnd_out(part2[li]));
        } else {
            st_out(p * n_ + n, part1[li]);
        }
    }
}

@compute @workgroup_size(256)
fn gate_up_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    grouped_vec(wg, nwg, li);
}

@compute @workgroup_size(256)
fn down_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    grouped_vec(wg, nwg, li);
}
