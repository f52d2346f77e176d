//! Fused-op conformance: each case compiles a composite of `fused.rs` with fusion for the
//! backend under test, checks the fused op is in the compiled graph wherever the backend
//! `supports` it (otherwise the case runs as primitives, said so, and is still compared), runs
//! it and compares with the CPU oracle running the graph as built (unfused).

use super::fused::{self, Built, MoeCase, MoeRow, RopeHeadsCase, Routing};
use super::{compare, run_on, Suite};
use crate::backend::cpu::CpuBackend;
use crate::compile::{compile, Compiled, Options};
use crate::graph::rope::RopeTable;
use crate::graph::{DType, Graph, Op, RopeStyle, TensorDesc};
use DType::{BF16, F16, F32};

/// Every fused-op case, by name.
pub const CASES: &[(&str, super::ops::CaseFn)] = &[
    ("fused_moe_prefill_routing_matches_cpu", fused_moe_prefill_routing_matches_cpu),
    ("fused_moe_decode_routing_matches_cpu", fused_moe_decode_routing_matches_cpu),
    ("fused_quantized_moe_matches_cpu", fused_quantized_moe_matches_cpu),
    ("fused_rope_heads_text_and_vision_match_cpu", fused_rope_heads_text_and_vision_match_cpu),
    ("fused_add_rms_norm_keeps_the_sum_for_later_readers", fused_add_rms_norm_keeps_the_sum_for_later_readers),
    ("fused_elementwise_chains_match_cpu", fused_elementwise_chains_match_cpu),
    ("fused_matmul_epilogues_match_cpu", fused_matmul_epilogues_match_cpu),
    ("fused_attention_from_the_composite_matches_cpu", fused_attention_from_the_composite_matches_cpu),
];

/// The nodes of `g` that `is_fused` picks, with their input types.
fn fused_nodes(g: &Graph, is_fused: fn(&Op) -> bool) -> Vec<(&Op, Vec<&TensorDesc>)> {
    let nodes = g.nodes().iter().filter(|n| is_fused(&n.op));
    nodes.map(|n| (&n.op, n.inputs.iter().map(|i| &g.node(*i).desc).collect())).collect()
}

/// Checks `x` through the suite's backend (see the module docs); returns the backend's
/// compilation for further checks when it compiled.
fn check(suite: &Suite, name: &str, x: &Built, is_fused: fn(&Op) -> bool, tol: f64) -> Option<Compiled> {
    let (cpu, b) = (CpuBackend::new(), suite.backend);
    let oracle = compile(&x.graph, &[], &cpu, Options::default());
    let want = run_on(&cpu, x.graph.clone(), &x.inputs, x.out, Options { fuse: false });
    let (oracle, want) = match (oracle, want) {
        (Ok(o), Ok(w)) => (o, w),
        (Err(e), _) | (_, Err(e)) => {
            suite.record(name, false, format!("the CPU oracle failed: {e}"));
            return None;
        }
    };
    let formed = fused_nodes(&oracle.graph, is_fused);
    if formed.is_empty() {
        suite.record(name, false, "the compiler formed no fused op: the case lost its pattern".into());
        return None;
    }
    let supported = formed.iter().filter(|(op, ins)| b.supports(op, ins)).count();
    let compiled = match compile(&x.graph, &[], b, Options::default()) {
        Ok(c) => c,
        Err(e) => {
            suite.record(name, false, format!("compiling for the backend failed: {e}"));
            return None;
        }
    };
    let present = fused_nodes(&compiled.graph, is_fused).len();
    let got = run_on(b, x.graph.clone(), &x.inputs, x.out, Options::default());
    let (mut passed, detail) = compare(got, &want, tol);
    // Where the backend lacks a fused op the compiler may still form smaller ones of its kind
    // (a shorter elementwise program): only a fully supported case pins the count.
    let how = if supported < formed.len() {
        let lacking = formed.len() - supported;
        format!("run as primitives ({lacking} of {} fused ops not supported, {present} formed)", formed.len())
    } else if present == supported {
        format!("{present} fused")
    } else {
        passed = false;
        format!("{present} fused ops in the compiled graph, want {supported}")
    };
    suite.record(name, passed, format!("{how}: {detail}"));
    Some(compiled)
}

fn tol(dt: DType) -> f64 {
    if dt == F32 {
        1e-5
    } else {
        1e-2
    }
}

fn moe(suite: &Suite, cases: &[MoeRow]) {
    for &row in cases {
        let m = MoeCase::from(row);
        // Rounding the routing weights and activations to 16 bits at other points than the
        // composite does costs a little more than the other fused ops.
        let tol = if m.dtype == F32 { 1e-5 } else { 2e-2 };
        check(suite, &format!("fused_{}", m.name()), &m.build(), |o| matches!(o, Op::Moe { .. }), tol);
    }
}

fn fused_moe_prefill_routing_matches_cpu(suite: &Suite) {
    use Routing::{AllToZero, Random};
    // (T, H, E, I, k, stored [E, out, in], dtype, routing): 16 to 40 pairs per expert, so
    // experts span several row tiles with ragged last ones.
    moe(
        suite,
        &[
            (77, 40, 8, 36, 3, true, F32, Random),
            (61, 33, 6, 19, 2, false, F32, Random),
            (70, 64, 16, 72, 4, true, BF16, Random),
            (53, 48, 8, 40, 3, false, BF16, Random),
            (40, 24, 6, 20, 1, false, F32, AllToZero), // one expert takes all, the others none
            (33, 24, 6, 20, 2, true, BF16, AllToZero),
            // CUDA's tensor-core grouped GEMMs (16-bit, H and I multiples of 8): several 64-row
            // tiles per expert, K not a multiple of 32, N not of 64; both layouts, f16 too.
            (300, 136, 4, 104, 2, false, BF16, Random),
            (100, 40, 4, 56, 2, true, F16, Random),
        ],
    );
}

fn fused_moe_decode_routing_matches_cpu(suite: &Suite) {
    use Routing::Random;
    // At most a few pairs per expert, most experts idle.
    moe(
        suite,
        &[
            (1, 40, 8, 36, 2, true, F32, Random),
            (1, 24, 6, 20, 2, false, F32, Random),
            (3, 33, 8, 19, 2, true, BF16, Random),
            (1, 64, 16, 72, 4, false, BF16, Random),
            (1, 24, 4, 12, 4, true, F32, Random),    // top-k = experts
            (2, 256, 8, 96, 2, false, BF16, Random), // CUDA's 16-byte-load matvec rows
        ],
    );
}

fn fused_quantized_moe_matches_cpu(suite: &Suite) {
    use crate::quant::QFormat::{Fp8, Nvfp4, Q4z, Q4, Q8};
    use Routing::{AllToZero, Random};
    // (case, format, group): decode (the matvec rows) and prefill (sorted tiles), rows of a
    // multiple of 4 code words (CUDA's 16-byte loads) and not, groups of one word up to a row.
    let cases: &[(MoeRow, _, usize)] = &[
        ((1, 64, 8, 32, 2, true, F32, Random), Q8, 32),
        ((2, 256, 8, 96, 2, true, BF16, Random), Q4, 32),
        ((1, 40, 4, 24, 4, true, F16, Random), Q4, 8),
        ((3, 48, 6, 40, 2, true, BF16, Random), Q8, 8),
        ((77, 64, 8, 48, 3, true, F32, Random), Q4, 16),
        ((70, 96, 16, 64, 4, true, BF16, Random), Q8, 32),
        ((40, 32, 6, 16, 2, true, F16, AllToZero), Q4, 16),
        ((1, 128, 4, 64, 2, true, BF16, Random), Fp8, 64),
        ((37, 64, 4, 32, 2, true, F32, Random), Fp8, 32),
        ((2, 128, 4, 64, 2, true, BF16, Random), Nvfp4, 16),
        ((40, 64, 6, 128, 2, true, F32, Random), Nvfp4, 16),
        ((1, 64, 4, 32, 2, true, BF16, Random), Q4z, 16),
        ((37, 64, 4, 48, 2, true, F32, Random), Q4z, 8),
        // Prefill in 16 bits (CUDA's tensor-core tiles decoding the weights).
        ((33, 128, 4, 64, 2, true, F16, Random), Nvfp4, 16),
        ((40, 64, 4, 40, 2, true, BF16, Random), Fp8, 8),
        ((29, 64, 6, 48, 3, true, BF16, Random), Q4z, 16),
    ];
    for &(row, format, group) in cases {
        let m = MoeCase::from(row);
        let tol = if m.dtype == F32 { 1e-5 } else { 2e-2 };
        let name = format!("fused_{}_g{group}_{}", format.name(), m.name());
        check(suite, &name, &m.build_quantized(format, group), |o| matches!(o, Op::QMoe { .. }), tol);
    }
}

fn rope_heads(suite: &Suite, name: &str, x: RopeHeadsCase) {
    let tol = tol(x.dtype);
    check(suite, name, &x.build(name), |o| matches!(o, Op::RopeHeads { .. }), tol);
}

fn fused_rope_heads_text_and_vision_match_cpu(suite: &Suite) {
    // Text prefill: three text tokens, then a 2 x 3 image, then two more text tokens.
    let mut prompt: Vec<Vec<u32>> = (0..3).map(|p| vec![p; 3]).collect();
    prompt.extend((0..6).map(|i| vec![3, 3 + i / 3, 3 + i % 3]));
    prompt.extend((6..8).map(|p| vec![p; 3]));
    let text = |dtype, heads, dim, table, positions, norm| RopeHeadsCase {
        dtype,
        heads,
        dim,
        table,
        positions,
        style: RopeStyle::Half,
        norm,
        packed_qkv: false,
    };
    let mrope = RopeTable::mrope_interleaved(128, 5e6, [24, 20, 20]);
    for dt in [F32, BF16] {
        let x = text(dt, 3, 128, mrope.clone(), prompt.clone(), true);
        rope_heads(suite, &format!("fused_rope_heads_text_prefill_T11_H3_D128_qk_norm_{dt:?}"), x);
    }
    let decode = text(F32, 5, 64, RopeTable::mrope_interleaved(64, 1e6, [12, 10, 10]), vec![vec![41; 3]], true);
    rope_heads(suite, "fused_rope_heads_text_decode_T1_H5_D64_qk_norm_F32", decode);
    // Partial rotary (16 of 24 dims rotate), and no norm.
    let partial = text(BF16, 3, 24, RopeTable::text(16, 1e4), (0..7).map(|p| vec![p * 5]).collect(), true);
    rope_heads(suite, "fused_rope_heads_partial_T7_H3_D24_R16_qk_norm_BF16", partial);
    let plain = text(F16, 3, 16, RopeTable::text(16, 1e4), (0..9).map(|p| vec![p]).collect(), false);
    rope_heads(suite, "fused_rope_heads_T9_H3_D16_F16", plain);
    let mut inter = text(F32, 2, 20, RopeTable::text(12, 1e4), (0..5).map(|p| vec![p * 3]).collect(), false);
    inter.style = RopeStyle::Interleaved;
    rope_heads(suite, "fused_rope_heads_interleaved_T5_H2_D20_R12_F32", inter);
    // Vision: 2-D positions over a 3 x 5 patch grid, heads sliced from the packed qkv, no norm.
    let grid: Vec<Vec<u32>> = (0..15).map(|i| vec![i / 5, i % 5]).collect();
    for dt in [F32, BF16] {
        let mut v = text(dt, 3, 40, RopeTable::vision_2d(40, 1e4), grid.clone(), false);
        v.packed_qkv = true;
        rope_heads(suite, &format!("fused_rope_heads_vision_T15_H3_D40_{dt:?}"), v);
    }
}

fn fused_add_rms_norm_keeps_the_sum_for_later_readers(suite: &Suite) {
    let is = |o: &Op| matches!(o, Op::AddRmsNorm { .. });
    for (dt, shape, early) in
        [(F32, [7, 333], false), (BF16, [5, 1000], false), (F32, [1, 40], false), (BF16, [3, 65], true)]
    {
        let name =
            format!("fused_add_rms_norm_{}x{}_{dt:?}{}", shape[0], shape[1], if early { "_read_early" } else { "" });
        let Some(c) = check(suite, &name, &fused::residual_stream(dt, shape, early), is, tol(dt)) else { continue };
        // Each fused pair writes its sum, which the stream reads after the norm.
        let sides = c.side.iter().flatten().count();
        suite.expect(&format!("{name}_writes_the_sum"), sides == fused_nodes(&c.graph, is).len());
    }
}

fn fused_elementwise_chains_match_cpu(suite: &Suite) {
    let is = |o: &Op| matches!(o, Op::Elementwise { .. });
    for dt in [F32, BF16] {
        check(
            suite,
            &format!("fused_elementwise_bias_gelu_erf_37x19_{dt:?}"),
            &fused::bias_gelu(dt, [37, 19]),
            is,
            tol(dt),
        );
        for dims @ [a, b, n] in [[3, 5, 13], [2, 7, 129]] {
            let name = format!("fused_elementwise_4_input_chain_{a}x{b}x{n}_{dt:?}");
            check(suite, &name, &fused::elementwise_chain(dt, dims), is, tol(dt));
            let name = format!("fused_elementwise_f16_round_trip_swiglu_{a}x{b}x{n}_{dt:?}");
            check(suite, &name, &fused::rounded_swiglu(dt, dims), is, tol(dt));
        }
    }
}

fn fused_matmul_epilogues_match_cpu(suite: &Suite) {
    let is = |o: &Op| matches!(o, Op::MatMulEpilogue { .. });
    for (m, dims @ [h, i], dt) in [(3, [45, 77], F32), (37, [33, 130], F32), (70, [45, 77], BF16), (2, [40, 72], BF16)]
    {
        let name = format!("fused_epilogue_bias_gelu_bias_residual_M{m}_H{h}_I{i}_{dt:?}");
        check(suite, &name, &fused::mlp_epilogues(dt, m, dims), is, tol(dt));
    }
    for (m, dims @ [h, i], dt) in [(1, [64, 96], F32), (37, [45, 77], BF16), (70, [33, 130], F32)] {
        let name = format!("fused_epilogue_swiglu_residual_M{m}_H{h}_I{i}_{dt:?}");
        check(suite, &name, &fused::swiglu_mlp(dt, m, dims), is, tol(dt));
    }
    for (dims @ [b, m, n, d], dt) in [([2, 5, 7, 16], F32), ([3, 9, 13, 24], BF16)] {
        let name = format!("fused_epilogue_scaled_scores_{b}x{m}x{n}x{d}_{dt:?}");
        check(suite, &name, &fused::scaled_scores(dt, dims), is, tol(dt));
    }
}

fn fused_attention_from_the_composite_matches_cpu(suite: &Suite) {
    let is = |o: &Op| matches!(o, Op::Attention { .. });
    for (t, s, tokens_first) in [(7, 19, false), (1, 40, true), (33, 33, true)] {
        let name = format!("fused_attention_causal_T{t}_S{s}{}", if tokens_first { "_tokens_first" } else { "" });
        check(suite, &name, &fused::attention(t, s, None, tokens_first), is, 1e-5);
    }
    let sizes = [16, 9, 4];
    check(suite, "fused_attention_packed_images_16_9_4", &fused::attention(29, 29, Some(&sizes), false), is, 1e-5);
}
