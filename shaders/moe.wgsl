// Grouped expert GEMMs and the weighted combine of the fused MoE op, driven by the plan that
// moe_route.wgsl's align builds (c). One workgroup per (64 output columns, tile of BM sorted
// rows of one expert); tiles past the number used exit at once, so the work follows the
// tokens actually routed. f32 accumulation, K in steps of 16 through workgroup memory.
//
// gate_up: a = x [T, H], b = gate_up stack, out = act [MT * BM, I]:
//   act = silu(x.gate) * (x.up), each product rounded to the output dtype first.
// down:    a = act, b = down stack, out = y [MT * BM, H].
// P (both): [0] K (inner), [1] N (output columns), [2] top_k, [3] MT, [4] 1 when the stack is
//   stored [E, out, in], [5] 1 for gate_up (rows of a are tokens; two weight halves).
// combine: a = y, b = route (weights' bits), out [T, H] = sum over the k chosen experts of
//   weight * y row. P: [0] T * H, [1] H, [2] top_k, [3] MT, [4] pairs, [5] 1 when y's rows are
//   the pairs themselves (the few-pairs path; c is then unused).
//
// Few pairs (decode): gate_up_vec / down_vec compute one routed pair per workgroup row (z),
// matvec style: 8 output columns per workgroup, 32 invocations per column striding over K, no
// sort and no tiles. a = x (token rows) or act (pair rows), b = the stack, c = route (expert
// ids). P as for the tiled GEMMs; out rows are pairs.
//
// The expert weights are read through hooks the family prefix supplies (moe_dense.wgsl: a
// stored stack, either layout; qmoe.wgsl: codes and scales decoded as read, the plan
// or route then bound as d): tab(i) (word i of the plan or route), w_at(e, r, kk) (input kk of
// output row r of expert e's matrix; gate_up's 2N rows are the gate rows, then the up rows),
// k_major() (whether consecutive inputs of a row are adjacent in memory) and
// row_dot2(arow, e, r, lane, two) (a lane's share of a's row times row r, and times row N + r
// when two).
const BM: u32 = 16u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const SENT: u32 = 0xffffffffu;
var<workgroup> xs: array<f32, 256>; // [BM][BK]
var<workgroup> w1: array<f32, 1024>; // [BK][BN]
var<workgroup> w2: array<f32, 1024>; // [BK][BN], the up half in gate_up

fn load_weights(e: u32, k0: u32, col0: u32, li: u32, two: bool) {
    let k_ = pu(0);
    let n_ = pu(1);
    let trans = k_major();
    for (var r = 0u; r < 4u; r = r + 1u) {
        let idx = li + r * 256u;
        // Consecutive invocations walk the stored matrix's contiguous axis.
        var bk = idx / BN;
        var bn = idx % BN;
        if (trans) {
            bn = idx / BK;
            bk = idx % BK;
        }
        var g = 0.0;
        var u = 0.0;
        if (col0 + bn < n_ && k0 + bk < k_) {
            g = w_at(e, col0 + bn, k0 + bk);
            if (two) { u = w_at(e, n_ + col0 + bn, k0 + bk); }
        }
        w1[bk * BN + bn] = g;
        w2[bk * BN + bn] = u;
    }
}

fn grouped(wg: vec3<u32>, lid: vec3<u32>, li: u32) {
    let tile = wg.y;
    if (tile >= tab(0u)) { return; }
    let k_ = pu(0);
    let n_ = pu(1);
    let topk = pu(2);
    let mt = pu(3);
    let two = pu(5) == 1u;
    let e = tab(1u + tile);
    let col0 = wg.x * BN;
    let lr = li / BK;
    let lk = li % BK;
    let q_load = tile * BM + lr;
    let pair = tab(1u + mt + q_load);
    // gate_up reads token rows of x; down reads the sorted rows of act.
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
    if (tab(1u + mt + q) == SENT) { return; }
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

@compute @workgroup_size(256)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = group_index(wg, nwg) * 256u + li;
    if (i >= pu(0)) { return; }
    let h_ = pu(1);
    let k = pu(2);
    let mt = pu(3);
    let pairs = pu(4);
    let t = i / h_;
    let n = i - t * h_;
    var acc = 0.0;
    let direct = pu(5) == 1u;
    for (var s = 0u; s < k; s = s + 1u) {
        let p = t * k + s;
        var q = p;
        if (!direct) { q = w_c(1u + mt + mt * BM + p); }
        acc = acc + bitcast<f32>(w_b(pairs + p)) * ld_a(q * h_ + n);
    }
    st_out(i, acc);
}

var<workgroup> part1: array<f32, 256>;
var<workgroup> part2: array<f32, 256>;

fn grouped_vec(wg: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let n_ = pu(1);
    let topk = pu(2);
    let two = pu(5) == 1u;
    let p = wg.z;
    let e = tab(p);
    let arow = select(p, p / topk, two);
    let n = group_index(wg, nwg) * 8u + li / 32u;
    let lane = li % 32u;
    var gu = vec2<f32>(0.0);
    if (n < n_) {
        gu = row_dot2(arow, e, n, lane, two);
    }
    part1[li] = gu.x;
    part2[li] = gu.y;
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
