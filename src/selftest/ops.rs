//! The op conformance cases: every op, one small case each (odd shapes, f32 / bf16 / f16
//! where they apply, seeded random inputs), checked against the CPU oracle by `Suite`.
//! `tests/conformance.rs` runs them on wgpu; `lumen selftest` on any backend.

use super::Suite;
use crate::graph::rope::RopeTable;
use crate::graph::{BinaryOp, DType, NodeId, Op, QWeight, RopeStyle, UnaryOp};
use crate::quant::QFormat;
use crate::HostTensor;
use DType::{BF16, F16, F32};

/// One case: builds its graphs and checks them through the suite.
pub type CaseFn = fn(&Suite);

/// Every case, by name.
pub const CASES: &[(&str, CaseFn)] = &[
    ("gather_rows_matches_cpu", gather_rows_matches_cpu),
    ("random_matches_cpu", random_matches_cpu),
    ("gather_with_2d_indices_matches_cpu", gather_with_2d_indices_matches_cpu),
    ("matmul_linear_matches_cpu", matmul_linear_matches_cpu),
    ("matmul_with_bf16_weights_matches_cpu", matmul_with_bf16_weights_matches_cpu),
    ("matmul_crossing_tile_edges_matches_cpu", matmul_crossing_tile_edges_matches_cpu),
    ("matmul_batched_grouped_heads_matches_cpu", matmul_batched_grouped_heads_matches_cpu),
    ("matmul_few_rows_decode_path_matches_cpu", matmul_few_rows_decode_path_matches_cpu),
    ("matmul_decode_gemv_shapes_match_cpu", matmul_decode_gemv_shapes_match_cpu),
    (
        "matmul_shared_input_through_stacked_experts_matches_cpu",
        matmul_shared_input_through_stacked_experts_matches_cpu,
    ),
    ("binary_broadcast_matches_cpu", binary_broadcast_matches_cpu),
    ("div_matches_cpu", div_matches_cpu),
    ("unary_ops_match_cpu", unary_ops_match_cpu),
    ("gelu_saturates_without_nan", gelu_saturates_without_nan),
    ("rms_norm_matches_cpu", rms_norm_matches_cpu),
    ("layer_norm_matches_cpu", layer_norm_matches_cpu),
    ("swiglu_matches_cpu", swiglu_matches_cpu),
    ("softmax_matches_cpu", softmax_matches_cpu),
    ("rope_text_matches_cpu", rope_text_matches_cpu),
    ("rope_mrope_and_vision_match_cpu", rope_mrope_and_vision_match_cpu),
    ("permute_matches_cpu", permute_matches_cpu),
    ("reshape_then_permute_matches_cpu", reshape_then_permute_matches_cpu),
    ("slice_matches_cpu", slice_matches_cpu),
    ("concat_matches_cpu", concat_matches_cpu),
    ("scatter_rows_matches_cpu", scatter_rows_matches_cpu),
    ("top_k_and_take_along_match_cpu", top_k_and_take_along_match_cpu),
    ("top_k_breaks_ties_by_lower_index", top_k_breaks_ties_by_lower_index),
    ("argmax_matches_cpu", argmax_matches_cpu),
    ("cast_matches_cpu", cast_matches_cpu),
    ("fused_attention_matches_cpu", fused_attention_matches_cpu),
    ("qmatmul_matches_cpu", qmatmul_matches_cpu),
];

fn gather_rows_matches_cpu(suite: &Suite) {
    for dt in [F32, BF16, F16] {
        let mut c = suite.case("gather");
        let t = c.float("table", dt, [37, 19]);
        let i = c.ints("idx", [11], 37);
        let y = c.g.gather(t, i).unwrap();
        c.check(&format!("gather_rows_{dt:?}"), y);
    }
}

fn gather_with_2d_indices_matches_cpu(suite: &Suite) {
    let mut c = suite.case("gather2d");
    let t = c.float("table", BF16, [50, 8]);
    let i = c.ints("idx", [3, 5], 50);
    let y = c.g.gather(t, i).unwrap();
    c.check("gather_2d_indices", y);
}

fn matmul_linear_matches_cpu(suite: &Suite) {
    let mut c = suite.case("linear");
    let x = c.float("x", F32, [3, 5, 67]);
    let w = c.float("w", F32, [45, 67]);
    let y = c.g.linear(x, w).unwrap();
    c.check("matmul_linear_f32", y);
}

fn matmul_with_bf16_weights_matches_cpu(suite: &Suite) {
    let mut c = suite.case("linear_bf16");
    let x = c.float("x", F32, [7, 130]);
    let w = c.float("w", BF16, [33, 130]);
    let y = c.g.linear(x, w).unwrap();
    c.check("matmul_bf16_weights", y);
}

fn matmul_crossing_tile_edges_matches_cpu(suite: &Suite) {
    let mut c = suite.case("tiles");
    let a = c.float("a", F32, [70, 129]);
    let b = c.float("b", F32, [129, 131]);
    let y = c.g.matmul(a, b, false).unwrap();
    c.check("matmul_70x129x131", y);
}

fn matmul_batched_grouped_heads_matches_cpu(suite: &Suite) {
    let mut c = suite.case("gqa");
    let q = c.float("q", F32, [6, 9, 16]);
    let k = c.float("k", F32, [2, 13, 16]);
    let s = c.g.matmul(q, k, true).unwrap();
    c.check("matmul_gqa_qk", s);
    let mut c = suite.case("gqa_pv");
    let p = c.float("p", BF16, [6, 9, 13]);
    let v = c.float("v", BF16, [3, 13, 16]);
    let o = c.g.matmul(p, v, false).unwrap();
    c.check("matmul_gqa_pv_bf16", o);
}

fn matmul_few_rows_decode_path_matches_cpu(suite: &Suite) {
    for (m, dt) in [(1, BF16), (3, F32), (4, F16)] {
        let mut c = suite.case("matvec");
        let x = c.float("x", F32, [m, 131]);
        let w = c.float("w", dt, [77, 131]);
        let y = c.g.linear(x, w).unwrap();
        c.check(&format!("matvec_{m}x131x77_{dt:?}_weights"), y);
    }
    let mut c = suite.case("matvec_gqa");
    let q = c.float("q", F32, [8, 1, 40]);
    let k = c.float("k", F32, [2, 45, 40]);
    let s = c.g.matmul(q, k, true).unwrap();
    c.check("matvec_gqa_decode_qk", s);
    let mut c = suite.case("matvec_pv");
    let p = c.float("p", F32, [8, 2, 45]);
    let v = c.float("v", F32, [2, 45, 40]);
    let o = c.g.matmul(p, v, false).unwrap();
    c.check("matvec_gqa_decode_pv", o);
}

/// Linear layers the CUDA decode GEMV takes (16-bit weights [N, K], K a multiple of 8, at most
/// 8 rows): K not a multiple of the 1,024 weights a warp loads per pass, 8 rows past its shared
/// memory (2,056 f32 each), a narrow N (K split over warps), batches folded into rows.
fn matmul_decode_gemv_shapes_match_cpu(suite: &Suite) {
    let cases: &[(&[usize], usize, DType, DType)] = &[
        (&[1, 1032], 77, BF16, BF16),
        (&[3, 136], 300, F32, F16),
        (&[8, 2056], 45, F32, BF16),
        (&[2, 3, 520], 5, BF16, BF16),
        (&[5, 2056], 1031, F16, F16),
    ];
    for &(xs, n, dx, dw) in cases {
        let k = *xs.last().unwrap();
        let mut c = suite.case("gemv");
        let x = c.float("x", dx, xs.to_vec());
        let w = c.float("w", dw, [n, k]);
        let y = c.g.linear(x, w).unwrap();
        c.check(&format!("gemv_{xs:?}x{n}_{dx:?}_x_{dw:?}_weights"), y);
    }
}

fn matmul_shared_input_through_stacked_experts_matches_cpu(suite: &Suite) {
    for (m, trans) in [(5, true), (5, false), (1, true), (2, false)] {
        let mut c = suite.case("experts");
        let x = c.float("x", F32, [m, 24]);
        let w = if trans { c.float("w", BF16, [3, 10, 24]) } else { c.float("w", BF16, [3, 24, 10]) };
        let y = c.g.matmul(x, w, trans).unwrap();
        c.check(&format!("matmul_shared_a_{m}_rows_trans_{trans}"), y);
    }
}

fn binary_broadcast_matches_cpu(suite: &Suite) {
    for (op, name) in [(BinaryOp::Add, "add"), (BinaryOp::Sub, "sub"), (BinaryOp::Mul, "mul")] {
        for dt in [F32, BF16] {
            let mut c = suite.case(name);
            let a = c.float("a", dt, [4, 1, 7]);
            let b = c.float("b", dt, [3, 1]);
            let y = c.g.push(Op::Binary(op), &[a, b]).unwrap();
            c.check(&format!("{name}_broadcast_{dt:?}"), y);
        }
    }
}

fn div_matches_cpu(suite: &Suite) {
    let mut c = suite.case("div");
    let a = c.float("a", F32, [5, 33]);
    let b = c.given(
        "b",
        HostTensor::from_f32(F32, [33], &(0..33).map(|i| 0.5 + i as f32 * 0.1).collect::<Vec<_>>()).unwrap(),
    );
    let y = c.g.push(Op::Binary(BinaryOp::Div), &[a, b]).unwrap();
    c.check("div_row_broadcast", y);
}

fn unary_ops_match_cpu(suite: &Suite) {
    for (op, name) in [
        (UnaryOp::Silu, "silu"),
        (UnaryOp::Gelu, "gelu_tanh"),
        (UnaryOp::GeluErf, "gelu_erf"),
        (UnaryOp::Exp, "exp"),
        (UnaryOp::Neg, "neg"),
    ] {
        for dt in [F32, BF16, F16] {
            let mut c = suite.case(name);
            let x = c.float("x", dt, [3, 251]);
            let x = c.g.scale(x, 4.0).unwrap();
            let y = c.g.unary(x, op).unwrap();
            c.check(&format!("{name}_{dt:?}"), y);
        }
    }
}

fn gelu_saturates_without_nan(suite: &Suite) {
    let mut c = suite.case("gelu_big");
    let v: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) * 10.0).collect();
    let x = c.given("x", HostTensor::from_f32(F32, [64], &v).unwrap());
    let y = c.g.unary(x, UnaryOp::Gelu).unwrap();
    c.check("gelu_large_inputs", y);
}

fn rms_norm_matches_cpu(suite: &Suite) {
    for (dt, rows, cols) in [(F32, 5, 131), (BF16, 3, 1000), (F16, 2, 64)] {
        let mut c = suite.case("rms");
        let x = c.float("x", dt, [rows, cols]);
        let w = c.float("w", dt, [cols]);
        let y = c.g.rms_norm(x, w, 1e-6).unwrap();
        c.check(&format!("rms_norm_{dt:?}_{rows}x{cols}"), y);
    }
}

fn layer_norm_matches_cpu(suite: &Suite) {
    for (dt, rows, cols) in [(F32, 7, 300), (BF16, 4, 33)] {
        let mut c = suite.case("ln");
        let x = c.float("x", dt, [rows, cols]);
        let x = c.g.scale(x, 3.0).unwrap();
        let w = c.float("w", dt, [cols]);
        let b = c.float("b", dt, [cols]);
        let y = c.g.layer_norm(x, w, b, 1e-6).unwrap();
        c.check(&format!("layer_norm_{dt:?}_{rows}x{cols}"), y);
    }
}

fn swiglu_matches_cpu(suite: &Suite) {
    for dt in [F32, BF16] {
        let mut c = suite.case("swiglu");
        let g = c.float("g", dt, [3, 77]);
        let u = c.float("u", dt, [3, 77]);
        let y = c.g.swiglu(g, u).unwrap();
        c.check(&format!("swiglu_{dt:?}"), y);
    }
}

fn softmax_matches_cpu(suite: &Suite) {
    for (dt, shape) in [(F32, vec![4, 3, 301]), (BF16, vec![5, 17]), (F32, vec![2, 1])] {
        let mut c = suite.case("softmax");
        let x = c.float("x", dt, shape.clone());
        let x = c.g.scale(x, 20.0).unwrap();
        let y = c.g.softmax(x).unwrap();
        c.check(&format!("softmax_{dt:?}_{shape:?}"), y);
    }
}

#[allow(clippy::too_many_arguments)]
fn rope_case(
    suite: &Suite,
    name: &str,
    dt: DType,
    heads: usize,
    dim: usize,
    table: &RopeTable,
    positions: &[Vec<u32>],
    style: RopeStyle,
) {
    let mut c = suite.case(name);
    let t = positions.len();
    let (cos, sin) = table.cos_sin(positions).unwrap();
    let x = c.float("x", dt, [t, heads, dim]);
    let cs = c.given("cos", HostTensor::from_f32(F32, [t, table.pairs()], &cos).unwrap());
    let sn = c.given("sin", HostTensor::from_f32(F32, [t, table.pairs()], &sin).unwrap());
    let y = c.g.rope(x, cs, sn, style).unwrap();
    c.check(name, y);
}

fn rope_text_matches_cpu(suite: &Suite) {
    let pos: Vec<Vec<u32>> = (0..5).map(|p| vec![p * 7]).collect();
    rope_case(suite, "rope_text_half_f32", F32, 3, 16, &RopeTable::text(16, 10000.0), &pos, RopeStyle::Half);
    rope_case(suite, "rope_text_half_bf16", BF16, 2, 64, &RopeTable::text(64, 1e6), &pos, RopeStyle::Half);
    rope_case(
        suite,
        "rope_partial_interleaved",
        F32,
        3,
        16,
        &RopeTable::text(10, 10000.0),
        &pos,
        RopeStyle::Interleaved,
    );
}

fn rope_mrope_and_vision_match_cpu(suite: &Suite) {
    let mpos: Vec<Vec<u32>> = (0..6).map(|i| vec![3, 3 + i / 3, 3 + i % 3]).collect();
    rope_case(
        suite,
        "rope_mrope_interleaved",
        F32,
        2,
        128,
        &RopeTable::mrope_interleaved(128, 5e6, [24, 20, 20]),
        &mpos,
        RopeStyle::Half,
    );
    let vpos: Vec<Vec<u32>> = (0..8).map(|i| vec![i / 4, i % 4]).collect();
    rope_case(suite, "rope_vision_2d", BF16, 3, 32, &RopeTable::vision_2d(32, 10000.0), &vpos, RopeStyle::Half);
}

fn permute_matches_cpu(suite: &Suite) {
    for (perm, dt) in [([0, 2, 1, 3], F32), ([3, 1, 0, 2], BF16)] {
        let mut c = suite.case("permute");
        let x = c.float("x", dt, [2, 3, 4, 5]);
        let y = c.g.permute(x, &perm).unwrap();
        c.check(&format!("permute_{perm:?}_{dt:?}"), y);
    }
}

fn reshape_then_permute_matches_cpu(suite: &Suite) {
    let mut c = suite.case("reshape");
    let x = c.float("x", F32, [6, 35]);
    let r = c.g.reshape(x, [6, 5, 7]).unwrap();
    let y = c.g.permute(r, &[1, 0, 2]).unwrap();
    c.check("reshape_permute", y);
}

fn slice_matches_cpu(suite: &Suite) {
    for dt in [F32, F16] {
        let mut c = suite.case("slice");
        let x = c.float("x", dt, [4, 9, 5]);
        let y = c.g.slice(x, 1, 2, 5).unwrap();
        c.check(&format!("slice_axis1_{dt:?}"), y);
    }
    let mut c = suite.case("slice_int");
    let x = c.ints("x", [3, 7], 1 << 30);
    let y = c.g.slice(x, 1, 3, 3).unwrap();
    c.check("slice_i32_exact", y);
}

fn concat_matches_cpu(suite: &Suite) {
    for (axis, dt) in [(1, BF16), (0, F32), (2, F16)] {
        let mut c = suite.case("concat");
        let mut shapes = [[3, 3, 5], [3, 3, 5], [3, 3, 5]];
        for (i, s) in shapes.iter_mut().enumerate() {
            s[axis] = 1 + 2 * i;
        }
        let xs: Vec<_> = shapes.iter().enumerate().map(|(i, s)| c.float(&format!("x{i}"), dt, *s)).collect();
        let y = c.g.concat(&xs, axis).unwrap();
        c.check(&format!("concat_axis{axis}_{dt:?}"), y);
    }
}

fn scatter_rows_matches_cpu(suite: &Suite) {
    for (acc, dt) in [(false, F32), (true, F32), (false, BF16)] {
        let mut c = suite.case("scatter");
        let base = c.float("base", dt, [10, 7]);
        let idx = c.given("idx", HostTensor::from_i32([4], &[8, 1, 5, 2]).unwrap());
        let rows = c.float("rows", dt, [4, 7]);
        let y = c.g.push(Op::ScatterRows { accumulate: acc }, &[base, idx, rows]).unwrap();
        c.check(&format!("scatter_rows_acc{acc}_{dt:?}"), y);
    }
}

fn top_k_and_take_along_match_cpu(suite: &Suite) {
    let mut c = suite.case("topk");
    let x = c.float("x", F32, [5, 37]);
    let i = c.g.push(Op::TopK { k: 6 }, &[x]).unwrap();
    c.check("top_k_6_of_37", i);
    let mut c = suite.case("topk_vals");
    let x = c.float("x", BF16, [4, 300]);
    let i = c.g.push(Op::TopK { k: 8 }, &[x]).unwrap();
    let v = c.g.push(Op::TakeAlong, &[x, i]).unwrap();
    c.check("take_along_top_8_of_300", v);
}

fn top_k_breaks_ties_by_lower_index(suite: &Suite) {
    let mut c = suite.case("ties");
    let x = c.given("x", HostTensor::from_f32(F32, [2, 6], &[1., 3., 3., 0., 3., 2., 5., 5., 5., 5., 5., 5.]).unwrap());
    let i = c.g.push(Op::TopK { k: 4 }, &[x]).unwrap();
    let want = c.check("top_k_ties", i);
    suite.expect("top_k_ties_order", want.to_i32() == vec![1, 2, 4, 5, 0, 1, 2, 3]);
}

fn argmax_matches_cpu(suite: &Suite) {
    let mut c = suite.case("argmax");
    let x = c.float("x", F32, [3, 1001]);
    let y = c.g.push(Op::ArgMax, &[x]).unwrap();
    c.check("argmax_3x1001", y);
}

fn random_matches_cpu(suite: &Suite) {
    for (dt, shape, offset, scale) in [(F32, vec![3, 1001], 0.0, 0.05), (BF16, vec![7, 3, 129], 1.0, 0.1)] {
        let mut c = suite.case("random");
        let op = Op::Random { seed: 0x1234_5678_9abc, offset, scale, dtype: dt, shape: shape.into() };
        let y = c.g.push(op, &[]).unwrap();
        c.check(&format!("random_{dt:?}"), y);
    }
}

fn cast_matches_cpu(suite: &Suite) {
    for (from, to) in [(F32, BF16), (BF16, F32), (F32, F16), (F16, BF16)] {
        let mut c = suite.case("cast");
        let x = c.float("x", from, [3, 45]);
        let y = c.g.push(Op::Cast(to), &[x]).unwrap();
        c.check(&format!("cast_{from:?}_to_{to:?}"), y);
    }
    let mut c = suite.case("cast_int");
    let x = c.float("x", F32, [2, 33]);
    let x = c.g.scale(x, 100.0).unwrap();
    let y = c.g.push(Op::Cast(DType::I32), &[x]).unwrap();
    c.check("cast_f32_to_i32", y);
    let mut c = suite.case("cast_back");
    let x = c.ints("x", [2, 33], 1000);
    let y = c.g.push(Op::Cast(F32), &[x]).unwrap();
    c.check("cast_i32_to_f32", y);
}

fn attention_case(suite: &Suite, name: &str, dt: DType, dims: [usize; 6], mask: bool, causal: bool) {
    for tokens_first in [false, true] {
        attention_case_with(suite, name, dt, dims, mask, causal, tokens_first);
    }
}

fn attention_case_with(
    suite: &Suite,
    name: &str,
    dt: DType,
    dims: [usize; 6],
    mask: bool,
    causal: bool,
    tokens_first: bool,
) {
    let [hq, t, s, d, dv, hkv] = dims;
    let mut c = suite.case(name);
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

fn fused_attention_matches_cpu(suite: &Suite) {
    attention_case(suite, "attention_gqa_masked", F32, [4, 5, 7, 8, 8, 2], true, false);
    attention_case(suite, "attention_causal_multi_tile", F32, [2, 3, 300, 64, 48, 1], false, true);
    attention_case(suite, "attention_decode_long_kv", F32, [8, 1, 513, 16, 16, 2], false, false);
    attention_case(suite, "attention_prefill_causal_masked", BF16, [3, 37, 37, 24, 24, 3], true, true);
    // Shapes CUDA's tensor-core kernel takes (16-bit, head sizes multiples of 8, >= 16 rows per
    // kv head): grouped causal prefill over two key tiles, a vision-like head of 72 (padded to
    // 80) with a mask, a chunk of prefill after cached keys, a narrow one with split keys.
    attention_case(suite, "attention_tc_causal_gqa", BF16, [8, 70, 70, 128, 128, 2], false, true);
    attention_case(suite, "attention_tc_head72_masked", F16, [4, 50, 50, 72, 72, 4], true, false);
    attention_case(suite, "attention_tc_chunk_after_past", BF16, [4, 20, 150, 96, 96, 2], true, true);
    attention_case(suite, "attention_tc_split_keys", BF16, [16, 1, 700, 64, 64, 1], false, false);
}

/// A qmatmul case: format, x's leading axes, N, K, group, x's dtype.
type QCase = (QFormat, &'static [usize], usize, usize, usize, DType);

/// Code words from pairs of uniform 16-bit halves (an f32 holds 16-bit integers exactly):
/// every word is a valid set of integer codes; FP8 bytes lose their exponent's low bit, so
/// none is a NaN code.
fn code_words(halves: &[f32], format: QFormat) -> Vec<u32> {
    let mask = if format == QFormat::Fp8 { 0xf7f7_f7f7 } else { u32::MAX };
    halves.chunks_exact(2).map(|h| ((h[0] as u32) | ((h[1] as u32) << 16)) & mask).collect()
}

/// Random scales for `codes` (of weights `lead + [K]`): small positive ones, as real checkpoints
/// have (NVFP4: E4M3 bytes without NaN codes, and global scales near 1/64 per weight; Q4z:
/// random zero points beside them).
fn random_scales(
    c: &mut super::fused::Composite,
    format: QFormat,
    group: usize,
    codes: NodeId,
    lead: &[usize],
    k: usize,
) -> QWeight {
    let count: usize = lead.iter().product::<usize>() * k / group;
    let shape = [lead, &[k / group / format.scales_per_word()]].concat();
    let (scales, global) = if format.has_global() {
        let halves = c.values(count / 2, 0.0, 65536.0);
        let s = c.given("s", HostTensor::from_u32(shape, &code_words(&halves, QFormat::Fp8)).unwrap());
        let b = if lead.len() == 2 { lead[0] } else { 1 };
        let gv = c.values(b, 0.01, 0.02);
        (s, Some(c.given("g", HostTensor::from_f32(F32, [b], &gv).unwrap())))
    } else if format.has_zero() {
        // Zero points 0..=16 (16: GPTQ's legacy zeros), each in its word beside the scale.
        let (sv, zv) = (c.values(count, 0.001, 0.05), c.values(count, 0.0, 16.99));
        let words: Vec<u32> =
            sv.iter().zip(&zv).map(|(&s, &z)| crate::quant::q4z_word(half::f16::from_f32(s), z as u8)).collect();
        (c.given("s", HostTensor::from_u32(shape, &words).unwrap()), None)
    } else {
        let sv = c.values(count, 0.001, 0.05);
        (c.given("s", HostTensor::from_f32(format.scale_dtype(), shape, &sv).unwrap()), None)
    };
    QWeight { codes, scales, global, format, group }
}

/// A stacked qmatmul case: format, weights in the stack, x's shape, N, K, group, x's dtype.
type StackCase = (QFormat, usize, &'static [usize], usize, usize, usize, DType);

/// Checks `x` (shape `xs`) times quantized weights `lead + [K]` (`[N, K]`, or a stack
/// `[B, N, K]`): random code words (every u32 is a valid set of integer or E2M1 codes; FP8's
/// without NaN) and the scales of [`random_scales`].
#[allow(clippy::too_many_arguments)]
fn qmatmul_check(
    suite: &Suite,
    name: &str,
    format: QFormat,
    xs: Vec<usize>,
    lead: &[usize],
    k: usize,
    group: usize,
    dt: DType,
) {
    let mut c = suite.case(name);
    let rows: usize = xs[..xs.len() - 1].iter().product();
    let w8a8 = crate::backend::cuda::fp8_activations(suite.backend.info(), k, group);
    if format == QFormat::Fp8 && dt != DType::F32 && rows > 8 && w8a8 {
        // CUDA's W8A8 tiles round x to E4M3 too (a scale per row and 32 inputs: ~2.4% relative
        // L2 off the oracle); a fragment or scale mix-up would be off by far more, and an error
        // below 1e-3 would mean the W8A16 path ran instead.
        c.within(1e-3, 6e-2);
    }
    let x = c.float("x", dt, xs);
    let words = lead.iter().product::<usize>() * k / format.per_word();
    // Two uniform 16-bit halves per word (an f32 holds 16-bit integers exactly).
    let halves = c.values(2 * words, 0.0, 65536.0);
    let shape = [lead, &[k / format.per_word()]].concat();
    let q = c.given("q", HostTensor::from_u32(shape, &code_words(&halves, format)).unwrap());
    let w = random_scales(&mut c, format, group, q, lead, k);
    let y = c.g.qmatmul(x, &w).unwrap();
    c.check(name, y);
}

fn qmatmul_matches_cpu(suite: &Suite) {
    use QFormat::{Fp8, Nvfp4, Q4z, Q4, Q8};
    // Few rows (the decode GEMV, up to 8 rows) and many (the tiled GEMM), odd N crossing the
    // output tiles, one group spanning all of K, batched leading axes.
    let cases: &[QCase] = &[
        (Q8, &[1], 33, 256, 32, BF16),
        (Q4, &[1], 96, 256, 64, F32),
        (Q8, &[3], 5, 64, 64, F32),
        (Q4, &[3], 33, 96, 32, BF16),
        (Q8, &[2, 4], 96, 96, 32, F32),
        (Q4, &[9], 5, 64, 64, F16),
        (Q8, &[17], 96, 96, 32, F32),
        (Q4, &[17], 5, 64, 32, F32),
        (Q8, &[70], 33, 256, 64, BF16),
        (Q4, &[70], 96, 256, 256, BF16),
        (Q4, &[2, 35], 33, 96, 32, F32),
        (Q8, &[70], 5, 256, 256, F32),
        // Groups of 6 and 1 words (the GEMV's runs of 2 and 1 words; rows of 5 words), and K
        // longer than the GEMV's x chunk (4096 inputs for 1 row, 1280 for 3, 512 for 8).
        (Q8, &[2], 33, 96, 24, F32),
        (Q4, &[5], 17, 40, 8, BF16),
        (Q4, &[20], 17, 40, 8, F32),
        (Q8, &[1], 5, 4224, 32, F32),
        (Q8, &[3], 5, 1344, 32, F32),
        (Q4, &[8], 33, 1152, 64, BF16),
        // FP8 codes with f32 scales: the GEMV (one row and several) and the tiles.
        (Fp8, &[1], 33, 256, 128, BF16),
        (Fp8, &[3], 17, 96, 32, F32),
        (Fp8, &[70], 40, 256, 128, F16),
        // The tiles of FP8 activations too (CUDA, when asked): partial row and column tiles,
        // groups of one and four 32-input steps.
        (Fp8, &[130], 72, 256, 128, BF16),
        (Fp8, &[33], 100, 96, 32, BF16),
        // NVFP4: E2M1 codes, E4M3 scale bytes, a global scale per weight.
        (Nvfp4, &[1], 33, 256, 16, BF16),
        (Nvfp4, &[3], 17, 128, 16, F32),
        (Nvfp4, &[70], 40, 192, 16, F16),
        // Q4z: zero points in the scale words; the GEMV's runs of 4 and 1 words, the tiles.
        (Q4z, &[1], 33, 256, 128, BF16),
        (Q4z, &[3], 17, 40, 8, F32),
        (Q4z, &[70], 40, 192, 32, F16),
        // CUDA's tensor-core tiles with K a multiple of 8 but not of their 32-input steps.
        (Q8, &[33], 17, 40, 8, F16),
    ];
    for &(format, rows, n, k, group, dt) in cases {
        let name = format!("qmatmul_{}_{rows:?}x{k}x{n}_g{group}_{dt:?}", format.name());
        qmatmul_check(suite, &name, format, [rows, &[k]].concat(), &[n], k, group, dt);
    }
    // Stacks of weights (MoE experts): x shared by every weight, or one block of rows each.
    let stacked: &[StackCase] = &[
        (Q8, 3, &[2, 64], 33, 64, 32, F32),
        (Q4, 4, &[4, 5, 64], 17, 64, 16, BF16),
        (Q4, 2, &[70, 96], 40, 96, 32, F32),
        (Q8, 5, &[5, 9, 40], 24, 40, 8, F16),
        (Fp8, 3, &[2, 64], 9, 64, 32, BF16),
        (Fp8, 3, &[3, 40, 64], 24, 64, 32, F16),
        (Nvfp4, 3, &[3, 2, 128], 9, 128, 16, F32),
        (Nvfp4, 2, &[70, 64], 24, 64, 16, BF16),
        (Q4z, 3, &[3, 5, 64], 9, 64, 16, F32),
        (Q4z, 2, &[2, 20, 64], 24, 64, 16, BF16),
    ];
    for &(format, b, xs, n, k, group, dt) in stacked {
        let name = format!("qmatmul_stack{b}_{}_{xs:?}x{n}_g{group}_{dt:?}", format.name());
        qmatmul_check(suite, &name, format, xs.to_vec(), &[b, n], k, group, dt);
    }
}
