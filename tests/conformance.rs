//! Op conformance: every op on every available backend against the CPU oracle, one small case
//! each, seeded random inputs, odd shapes, outputs poisoned with NaN before each run.
//! Relative error tolerance: 1e-5 for f32, 1e-2 where 16-bit floats are involved.

mod common;

use common::Case;
use lumen::graph::rope::RopeTable;
use lumen::graph::{BinaryOp, DType, Op, RopeStyle, UnaryOp};
use lumen::HostTensor;
use DType::{BF16, F16, F32};

#[test]
fn gather_rows_matches_cpu() {
    for dt in [F32, BF16, F16] {
        let mut c = Case::new("gather");
        let t = c.float("table", dt, [37, 19]);
        let i = c.ints("idx", [11], 37);
        let y = c.g.gather(t, i).unwrap();
        c.check(&format!("gather_rows_{dt:?}"), y);
    }
}

#[test]
fn gather_with_2d_indices_matches_cpu() {
    let mut c = Case::new("gather2d");
    let t = c.float("table", BF16, [50, 8]);
    let i = c.ints("idx", [3, 5], 50);
    let y = c.g.gather(t, i).unwrap();
    c.check("gather_2d_indices", y);
}

#[test]
fn matmul_linear_matches_cpu() {
    let mut c = Case::new("linear");
    let x = c.float("x", F32, [3, 5, 67]);
    let w = c.float("w", F32, [45, 67]);
    let y = c.g.linear(x, w).unwrap();
    c.check("matmul_linear_f32", y);
}

#[test]
fn matmul_with_bf16_weights_matches_cpu() {
    let mut c = Case::new("linear_bf16");
    let x = c.float("x", F32, [7, 130]);
    let w = c.float("w", BF16, [33, 130]);
    let y = c.g.linear(x, w).unwrap();
    c.check("matmul_bf16_weights", y);
}

#[test]
fn matmul_crossing_tile_edges_matches_cpu() {
    let mut c = Case::new("tiles");
    let a = c.float("a", F32, [70, 129]);
    let b = c.float("b", F32, [129, 131]);
    let y = c.g.matmul(a, b, false).unwrap();
    c.check("matmul_70x129x131", y);
}

#[test]
fn matmul_batched_grouped_heads_matches_cpu() {
    let mut c = Case::new("gqa");
    let q = c.float("q", F32, [6, 9, 16]);
    let k = c.float("k", F32, [2, 13, 16]);
    let s = c.g.matmul(q, k, true).unwrap();
    c.check("matmul_gqa_qk", s);
    let mut c = Case::new("gqa_pv");
    let p = c.float("p", BF16, [6, 9, 13]);
    let v = c.float("v", BF16, [3, 13, 16]);
    let o = c.g.matmul(p, v, false).unwrap();
    c.check("matmul_gqa_pv_bf16", o);
}

#[test]
fn matmul_few_rows_decode_path_matches_cpu() {
    for (m, dt) in [(1, BF16), (3, F32), (4, F16)] {
        let mut c = Case::new("matvec");
        let x = c.float("x", F32, [m, 131]);
        let w = c.float("w", dt, [77, 131]);
        let y = c.g.linear(x, w).unwrap();
        c.check(&format!("matvec_{m}x131x77_{dt:?}_weights"), y);
    }
    let mut c = Case::new("matvec_gqa");
    let q = c.float("q", F32, [8, 1, 40]);
    let k = c.float("k", F32, [2, 45, 40]);
    let s = c.g.matmul(q, k, true).unwrap();
    c.check("matvec_gqa_decode_qk", s);
    let mut c = Case::new("matvec_pv");
    let p = c.float("p", F32, [8, 2, 45]);
    let v = c.float("v", F32, [2, 45, 40]);
    let o = c.g.matmul(p, v, false).unwrap();
    c.check("matvec_gqa_decode_pv", o);
}

#[test]
fn matmul_shared_input_through_stacked_experts_matches_cpu() {
    for (m, trans) in [(5, true), (5, false), (1, true), (2, false)] {
        let mut c = Case::new("experts");
        let x = c.float("x", F32, [m, 24]);
        let w = if trans { c.float("w", BF16, [3, 10, 24]) } else { c.float("w", BF16, [3, 24, 10]) };
        let y = c.g.matmul(x, w, trans).unwrap();
        assert_eq!(c.g.desc(y).shape.0, vec![3, m, 10]);
        c.check(&format!("matmul_shared_a_{m}_rows_trans_{trans}"), y);
    }
}

#[test]
fn binary_broadcast_matches_cpu() {
    for (op, name) in [(BinaryOp::Add, "add"), (BinaryOp::Sub, "sub"), (BinaryOp::Mul, "mul")] {
        for dt in [F32, BF16] {
            let mut c = Case::new(name);
            let a = c.float("a", dt, [4, 1, 7]);
            let b = c.float("b", dt, [3, 1]);
            let y = c.g.push(Op::Binary(op), &[a, b]).unwrap();
            c.check(&format!("{name}_broadcast_{dt:?}"), y);
        }
    }
}

#[test]
fn div_matches_cpu() {
    let mut c = Case::new("div");
    let a = c.float("a", F32, [5, 33]);
    let b = c.given(
        "b",
        HostTensor::from_f32(F32, [33], &(0..33).map(|i| 0.5 + i as f32 * 0.1).collect::<Vec<_>>()).unwrap(),
    );
    let y = c.g.push(Op::Binary(BinaryOp::Div), &[a, b]).unwrap();
    c.check("div_row_broadcast", y);
}

#[test]
fn unary_ops_match_cpu() {
    for (op, name) in [
        (UnaryOp::Silu, "silu"),
        (UnaryOp::Gelu, "gelu_tanh"),
        (UnaryOp::GeluErf, "gelu_erf"),
        (UnaryOp::Exp, "exp"),
        (UnaryOp::Neg, "neg"),
    ] {
        for dt in [F32, BF16, F16] {
            let mut c = Case::new(name);
            let x = c.float("x", dt, [3, 251]);
            let x = c.g.scale(x, 4.0).unwrap();
            let y = c.g.unary(x, op).unwrap();
            c.check(&format!("{name}_{dt:?}"), y);
        }
    }
}

#[test]
fn gelu_saturates_without_nan() {
    let mut c = Case::new("gelu_big");
    let v: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) * 10.0).collect();
    let x = c.given("x", HostTensor::from_f32(F32, [64], &v).unwrap());
    let y = c.g.unary(x, UnaryOp::Gelu).unwrap();
    c.check("gelu_large_inputs", y);
}

#[test]
fn rms_norm_matches_cpu() {
    for (dt, rows, cols) in [(F32, 5, 131), (BF16, 3, 1000), (F16, 2, 64)] {
        let mut c = Case::new("rms");
        let x = c.float("x", dt, [rows, cols]);
        let w = c.float("w", dt, [cols]);
        let y = c.g.rms_norm(x, w, 1e-6).unwrap();
        c.check(&format!("rms_norm_{dt:?}_{rows}x{cols}"), y);
    }
}

#[test]
fn layer_norm_matches_cpu() {
    for (dt, rows, cols) in [(F32, 7, 300), (BF16, 4, 33)] {
        let mut c = Case::new("ln");
        let x = c.float("x", dt, [rows, cols]);
        let x = c.g.scale(x, 3.0).unwrap();
        let w = c.float("w", dt, [cols]);
        let b = c.float("b", dt, [cols]);
        let y = c.g.layer_norm(x, w, b, 1e-6).unwrap();
        c.check(&format!("layer_norm_{dt:?}_{rows}x{cols}"), y);
    }
}

#[test]
fn swiglu_matches_cpu() {
    for dt in [F32, BF16] {
        let mut c = Case::new("swiglu");
        let g = c.float("g", dt, [3, 77]);
        let u = c.float("u", dt, [3, 77]);
        let y = c.g.swiglu(g, u).unwrap();
        c.check(&format!("swiglu_{dt:?}"), y);
    }
}

#[test]
fn softmax_matches_cpu() {
    for (dt, shape) in [(F32, vec![4, 3, 301]), (BF16, vec![5, 17]), (F32, vec![2, 1])] {
        let mut c = Case::new("softmax");
        let x = c.float("x", dt, shape.clone());
        let x = c.g.scale(x, 20.0).unwrap();
        let y = c.g.softmax(x).unwrap();
        c.check(&format!("softmax_{dt:?}_{shape:?}"), y);
    }
}

fn rope_case(
    name: &str,
    dt: DType,
    heads: usize,
    dim: usize,
    table: &RopeTable,
    positions: &[Vec<u32>],
    style: RopeStyle,
) {
    let mut c = Case::new(name);
    let t = positions.len();
    let (cos, sin) = table.cos_sin(positions).unwrap();
    let x = c.float("x", dt, [t, heads, dim]);
    let cs = c.given("cos", HostTensor::from_f32(F32, [t, table.pairs()], &cos).unwrap());
    let sn = c.given("sin", HostTensor::from_f32(F32, [t, table.pairs()], &sin).unwrap());
    let y = c.g.rope(x, cs, sn, style).unwrap();
    c.check(name, y);
}

#[test]
fn rope_text_matches_cpu() {
    let pos: Vec<Vec<u32>> = (0..5).map(|p| vec![p * 7]).collect();
    rope_case("rope_text_half_f32", F32, 3, 16, &RopeTable::text(16, 10000.0), &pos, RopeStyle::Half);
    rope_case("rope_text_half_bf16", BF16, 2, 64, &RopeTable::text(64, 1e6), &pos, RopeStyle::Half);
    rope_case("rope_partial_interleaved", F32, 3, 16, &RopeTable::text(10, 10000.0), &pos, RopeStyle::Interleaved);
}

#[test]
fn rope_mrope_and_vision_match_cpu() {
    let mpos: Vec<Vec<u32>> = (0..6).map(|i| vec![3, 3 + i / 3, 3 + i % 3]).collect();
    rope_case(
        "rope_mrope_interleaved",
        F32,
        2,
        128,
        &RopeTable::mrope_interleaved(128, 5e6, [24, 20, 20]),
        &mpos,
        RopeStyle::Half,
    );
    let vpos: Vec<Vec<u32>> = (0..8).map(|i| vec![i / 4, i % 4]).collect();
    rope_case("rope_vision_2d", BF16, 3, 32, &RopeTable::vision_2d(32, 10000.0), &vpos, RopeStyle::Half);
}

#[test]
fn permute_matches_cpu() {
    for (perm, dt) in [([0, 2, 1, 3], F32), ([3, 1, 0, 2], BF16)] {
        let mut c = Case::new("permute");
        let x = c.float("x", dt, [2, 3, 4, 5]);
        let y = c.g.permute(x, &perm).unwrap();
        c.check(&format!("permute_{perm:?}_{dt:?}"), y);
    }
}

#[test]
fn reshape_then_permute_matches_cpu() {
    let mut c = Case::new("reshape");
    let x = c.float("x", F32, [6, 35]);
    let r = c.g.reshape(x, [6, 5, 7]).unwrap();
    let y = c.g.permute(r, &[1, 0, 2]).unwrap();
    c.check("reshape_permute", y);
}

#[test]
fn slice_matches_cpu() {
    for dt in [F32, F16] {
        let mut c = Case::new("slice");
        let x = c.float("x", dt, [4, 9, 5]);
        let y = c.g.slice(x, 1, 2, 5).unwrap();
        c.check(&format!("slice_axis1_{dt:?}"), y);
    }
    let mut c = Case::new("slice_int");
    let x = c.ints("x", [3, 7], 1 << 30);
    let y = c.g.slice(x, 1, 3, 3).unwrap();
    c.check("slice_i32_exact", y);
}

#[test]
fn concat_matches_cpu() {
    for (axis, dt) in [(1, BF16), (0, F32), (2, F16)] {
        let mut c = Case::new("concat");
        let mut shapes = [[3, 3, 5], [3, 3, 5], [3, 3, 5]];
        for (i, s) in shapes.iter_mut().enumerate() {
            s[axis] = 1 + 2 * i;
        }
        let xs: Vec<_> = shapes.iter().enumerate().map(|(i, s)| c.float(&format!("x{i}"), dt, *s)).collect();
        let y = c.g.concat(&xs, axis).unwrap();
        c.check(&format!("concat_axis{axis}_{dt:?}"), y);
    }
}

#[test]
fn scatter_rows_matches_cpu() {
    for (acc, dt) in [(false, F32), (true, F32), (false, BF16)] {
        let mut c = Case::new("scatter");
        let base = c.float("base", dt, [10, 7]);
        let idx = c.given("idx", HostTensor::from_i32([4], &[8, 1, 5, 2]).unwrap());
        let rows = c.float("rows", dt, [4, 7]);
        let y = c.g.push(Op::ScatterRows { accumulate: acc }, &[base, idx, rows]).unwrap();
        c.check(&format!("scatter_rows_acc{acc}_{dt:?}"), y);
    }
}

#[test]
fn top_k_and_take_along_match_cpu() {
    let mut c = Case::new("topk");
    let x = c.float("x", F32, [5, 37]);
    let i = c.g.push(Op::TopK { k: 6 }, &[x]).unwrap();
    c.check("top_k_6_of_37", i);
    let mut c = Case::new("topk_vals");
    let x = c.float("x", BF16, [4, 300]);
    let i = c.g.push(Op::TopK { k: 8 }, &[x]).unwrap();
    let v = c.g.push(Op::TakeAlong, &[x, i]).unwrap();
    c.check("take_along_top_8_of_300", v);
}

#[test]
fn top_k_breaks_ties_by_lower_index() {
    let mut c = Case::new("ties");
    let x = c.given("x", HostTensor::from_f32(F32, [2, 6], &[1., 3., 3., 0., 3., 2., 5., 5., 5., 5., 5., 5.]).unwrap());
    let i = c.g.push(Op::TopK { k: 4 }, &[x]).unwrap();
    let want = c.check("top_k_ties", i);
    assert_eq!(want.to_i32(), vec![1, 2, 4, 5, 0, 1, 2, 3]);
}

#[test]
fn argmax_matches_cpu() {
    let mut c = Case::new("argmax");
    let x = c.float("x", F32, [3, 1001]);
    let y = c.g.push(Op::ArgMax, &[x]).unwrap();
    c.check("argmax_3x1001", y);
}

#[test]
fn cast_matches_cpu() {
    for (from, to) in [(F32, BF16), (BF16, F32), (F32, F16), (F16, BF16)] {
        let mut c = Case::new("cast");
        let x = c.float("x", from, [3, 45]);
        let y = c.g.push(Op::Cast(to), &[x]).unwrap();
        c.check(&format!("cast_{from:?}_to_{to:?}"), y);
    }
    let mut c = Case::new("cast_int");
    let x = c.float("x", F32, [2, 33]);
    let x = c.g.scale(x, 100.0).unwrap();
    let y = c.g.push(Op::Cast(DType::I32), &[x]).unwrap();
    c.check("cast_f32_to_i32", y);
    let mut c = Case::new("cast_back");
    let x = c.ints("x", [2, 33], 1000);
    let y = c.g.push(Op::Cast(F32), &[x]).unwrap();
    c.check("cast_i32_to_f32", y);
}

fn attention_case(name: &str, dt: DType, dims: [usize; 6], mask: bool, causal: bool) {
    for tokens_first in [false, true] {
        attention_case_with(name, dt, dims, mask, causal, tokens_first);
    }
}

fn attention_case_with(name: &str, dt: DType, dims: [usize; 6], mask: bool, causal: bool, tokens_first: bool) {
    let [hq, t, s, d, dv, hkv] = dims;
    let mut c = Case::new(name);
    let q = c.float("q", dt, [hq, t, d]);
    let k = c.float("k", dt, [hkv, s, d]);
    let v = c.float("v", dt, [hkv, s, dv]);
    let mut ins = vec![q, k, v];
    if mask {
        let m: Vec<f32> = (0..t * s)
            .map(|i| if (i * 7) % 5 == 0 && i % s != 0 { f32::NEG_INFINITY } else { ((i % 3) as f32) * 0.1 })
            .collect();
        ins.push(c.given("mask", HostTensor::from_f32(F32, [t, s], &m).unwrap()));
    }
    let y = c.g.push(Op::Attention { scale: 1.0 / (d as f32).sqrt(), causal, tokens_first }, &ins).unwrap();
    c.check(&format!("{name}{}", if tokens_first { "_tokens_first" } else { "" }), y);
}

#[test]
fn fused_attention_matches_cpu() {
    attention_case("attention_gqa_masked", F32, [4, 5, 7, 8, 8, 2], true, false);
    attention_case("attention_causal_multi_tile", F32, [2, 3, 300, 64, 48, 1], false, true);
    attention_case("attention_decode_long_kv", F32, [8, 1, 513, 16, 16, 2], false, false);
    attention_case("attention_prefill_causal_masked", BF16, [3, 37, 37, 24, 24, 3], true, true);
}
