// moe.wgsl's weight hooks for weight-only quantized expert stacks (Op::QMoe): codes (b, u32
// words of PER codes along the inputs) and group scales (c: f16, f32 for FP8), stored
// [E, out, in]; each weight is decoded as it is read, no full-precision weight is written. The
// family prefix sets BITS (8: int8 codes; 4: codes biased by 8), FP8 (E4M3 codes), NVFP4
// (E2M1 codes, E4M3 scale bytes, the expert's global scale e [E] through glob) and ZP (Q4z:
// unsigned codes less the zero point in bits 16..24 of their group's scale word). The plan or
// route is d; P[4] is the group size.
const PER: u32 = 32u / BITS;

fn tab(i: u32) -> u32 { return w_d(i); }

fn k_major() -> bool { return true; }

// Code j of a word as its value.
fn code_at(word: u32, j: u32) -> f32 {
    if (NVFP4) {
        return e2m1(word >> (4u * j));
    }
    if (FP8) {
        return e4m3((word >> (8u * j)) & 255u);
    }
    if (BITS == 8u) {
        return f32(bitcast<i32>(word << (24u - 8u * j)) >> 24u);
    }
    if (ZP) { return f32((word >> (4u * j)) & 15u); } // less zero(), by the caller
    return f32(i32((word >> (4u * j)) & 15u) - 8);
}

// Row r of expert e (gate_up's experts have 2N rows) over all experts.
fn stack_row(e: u32, r: u32) -> u32 {
    return e * select(pu(1), 2u * pu(1), pu(5) == 1u) + r;
}

// Scale i of the stack (f16; f32 for FP8; an E4M3 byte of a word for NVFP4; the low half of
// a word for Q4z).
fn scale(i: u32) -> f32 {
    if (NVFP4) { return e4m3((w_c(i >> 2u) >> ((i & 3u) * 8u)) & 255u); }
    if (ZP) { return f16_to_f32(w_c(i) & 0xffffu); }
    return ld_c(i);
}

// Group i's zero point (Q4z; 0 for the other formats).
fn zero(i: u32) -> f32 {
    if (ZP) { return f32((w_c(i) >> 16u) & 255u); }
    return 0.0;
}

fn w_at(e: u32, r: u32, kk: u32) -> f32 {
    let k_ = pu(0);
    let group = pu(4);
    let row = stack_row(e, r);
    let word = w_b(row * (k_ / PER) + kk / PER);
    let g = row * (k_ / group) + kk / group;
    return (code_at(word, kk % PER) - zero(g)) * scale(g) * glob(e);
}

// One code word per step for each row: decoded once, its sum times its group's scale.
fn row_dot2(arow: u32, e: u32, r: u32, lane: u32, two: bool) -> vec2<f32> {
    let k_ = pu(0);
    let group = pu(4);
    let words = k_ / PER;
    let g_row = stack_row(e, r);
    let u_row = stack_row(e, pu(1) + r);
    var acc = vec2<f32>(0.0);
    for (var u = lane; u < words; u = u + 32u) {
        let gw = w_b(g_row * words + u);
        var uw = 0u;
        if (two) { uw = w_b(u_row * words + u); }
        let s = u * PER / group;
        let gz = zero(g_row * (k_ / group) + s);
        var uz = 0.0;
        if (two) { uz = zero(u_row * (k_ / group) + s); }
        var part = vec2<f32>(0.0);
        for (var j = 0u; j < PER; j = j + 1u) {
            let xv = ld_a(arow * k_ + u * PER + j);
            part.x = part.x + xv * (code_at(gw, j) - gz);
            if (two) { part.y = part.y + xv * (code_at(uw, j) - uz); }
        }
        acc.x = acc.x + part.x * scale(g_row * (k_ / group) + s);
        if (two) { acc.y = acc.y + part.y * scale(u_row * (k_ / group) + s); }
    }
    return acc * glob(e);
}
