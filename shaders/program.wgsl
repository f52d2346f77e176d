// The elementwise program interpreter shared by the elementwise and matmul-epilogue families
// (included before them, after activations.wgsl). A stack program runs once per output
// element over inputs broadcast to the output's shape.
// P: [12] program length, [13..19) output dims (padded to rank 6 with leading 1s), [19..43)
// strides of inputs 0..3 (6 each, 0 on broadcast dims), [43..64) the program: one word per
// instruction, opcode in the low byte, argument above it; a scale's factor (f32 bits) is the
// next word. Opcodes: 0 load input, 1 unary (0 silu, 1 gelu tanh, 2 gelu erf, 3 exp, 4 neg),
// 2 scale, 3 binary (0 add, 1 sub, 2 mul, 3 div), 4 swiglu, 5 round (0 bf16, 1 f16).
// The family's prefix defines `load(slot, i)` and SLOTS (inputs with offsets); with HAS_ACC,
// input 0 is the value `acc` the caller passes (a matmul's product) instead of a load.

fn unary_op(k: u32, x: f32) -> f32 {
    switch k {
        case 0u: { return x / (1.0 + exp(-x)); }
        case 1u: { return gelu_tanh(x); }
        case 2u: { return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476)); }
        case 3u: { return exp(x); }
        default: { return -x; }
    }
}

fn binary_op(k: u32, a: f32, b: f32) -> f32 {
    switch k {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        default: { return a / b; }
    }
}

fn round_to(k: u32, v: f32) -> f32 {
    if (k == 0u) { return bitcast<f32>(f32_to_bf16(v) << 16u); }
    return f16_to_f32(f32_to_f16(v));
}

fn run_program(i: u32, acc: f32) -> f32 {
    var offs = array<u32, 4>(0u, 0u, 0u, 0u);
    var rem = i;
    for (var d = 5; d >= 0; d = d - 1) {
        let dim = pu(13u + u32(d));
        if (dim > 1u) {
            let x = rem % dim;
            rem = rem / dim;
            for (var s = 0u; s < SLOTS; s = s + 1u) { offs[s] = offs[s] + x * pu(19u + s * 6u + u32(d)); }
        }
    }
    var st: array<f32, 8>;
    var sp = 0u;
    let len = pu(12);
    var pc = 0u;
    loop {
        if (pc >= len) { break; }
        let w = pu(43u + pc);
        let arg = w >> 8u;
        switch w & 0xffu {
            case 0u: {
                if (HAS_ACC && arg == 0u) { st[sp] = acc; } else { st[sp] = load(arg, offs[arg & 3u]); }
                sp = sp + 1u;
            }
            case 1u: { st[sp - 1u] = unary_op(arg, st[sp - 1u]); }
            case 2u: { pc = pc + 1u; st[sp - 1u] = st[sp - 1u] * bitcast<f32>(pu(43u + pc)); }
            case 3u: { sp = sp - 1u; st[sp - 1u] = binary_op(arg, st[sp - 1u], st[sp]); }
            case 4u: { sp = sp - 1u; let g = st[sp - 1u]; st[sp - 1u] = g / (1.0 + exp(-g)) * st[sp]; }
            default: { st[sp - 1u] = round_to(arg, st[sp - 1u]); }
        }
        pc = pc + 1u;
    }
    return st[0];
}
