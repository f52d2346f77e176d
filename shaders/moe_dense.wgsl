// moe.wgsl's weight hooks for a stored expert stack (b), [E, out, in] when P[4] is 1, else
// [E, in, out]; the plan or route is c.
fn tab(i: u32) -> u32 { return w_c(i); }

fn k_major() -> bool { return pu(4) == 1u; }

// Input kk of output row r of expert e (gate_up's experts have 2N rows).
fn w_at(e: u32, r: u32, kk: u32) -> f32 {
    let k_ = pu(0);
    let rows = select(pu(1), 2u * pu(1), pu(5) == 1u);
    if (k_major()) { return ld_b((e * rows + r) * k_ + kk); }
    return ld_b(e * k_ * rows + kk * rows + r);
}

fn row_dot2(arow: u32, e: u32, r: u32, lane: u32, two: bool) -> vec2<f32> {
    let k_ = pu(0);
    let n_ = pu(1);
    var acc = vec2<f32>(0.0);
    for (var kk = lane; kk < k_; kk = kk + 32u) {
        let xv = ld_a(arow * k_ + kk);
        acc.x = acc.x + xv * w_at(e, r, kk);
        if (two) { acc.y = acc.y + xv * w_at(e, n_ + r, kk); }
    }
    return acc;
}
