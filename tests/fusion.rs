//! The compiler's fusion passes: a fused graph computes what the graph as built computes (on
//! the CPU oracle and on wgpu, random inputs, odd shapes), and the number of kernels it
//! launches is pinned, so a pass that silently stops firing fails here.

mod common;

use common::rel_err;
use lumen::backend::cpu::CpuBackend;
use lumen::backend::Backend;
use lumen::compile::report::{kernels_by_scope, range_of};
use lumen::compile::{compile, Options};
use lumen::exec::Executor;
use lumen::graph::rope::RopeTable;
use lumen::graph::{DType, Graph, NodeId, Op};
use lumen::selftest::fused::{self, Built, Composite, MoeCase, RopeHeadsCase, Routing};

fn run(b: &dyn Backend, x: &Built, fuse: bool) -> (Vec<f32>, Graph) {
    let mut ex = Executor::with_options(b, x.graph.clone(), &[], Options { fuse }).unwrap().poison_outputs(true);
    for (n, t) in &x.inputs {
        ex.set(n, t).unwrap();
    }
    ex.run().unwrap();
    (ex.read(x.out).unwrap().to_f32(), ex.graph().clone())
}

fn count(g: &Graph, f: impl Fn(&Op) -> bool) -> usize {
    g.nodes().iter().filter(|n| f(&n.op)).count()
}

fn kernels(c: &lumen::compile::Compiled) -> usize {
    kernels_by_scope(c).values().sum()
}

/// Kernels `graph` launches on the CPU oracle, fused and as built.
fn launches(graph: &Graph) -> (usize, usize) {
    let cpu = CpuBackend::new();
    let f = compile(graph, &[], &cpu, Options::default()).unwrap();
    let p = compile(graph, &[], &cpu, Options { fuse: false }).unwrap();
    (kernels(&f), kernels(&p))
}

/// Fused vs as-built on the CPU oracle and on wgpu (and wgpu's fused vs the oracle's).
fn check(name: &str, x: &Built, fused_op: fn(&Op) -> bool, tol: f64) {
    check_n(name, x, fused_op, 1, tol)
}

fn check_n(name: &str, x: &Built, fused_op: fn(&Op) -> bool, want_fused: usize, tol: f64) {
    let cpu = CpuBackend::new();
    let (want, plain) = run(&cpu, x, false);
    let (got, fused) = run(&cpu, x, true);
    assert_eq!(count(&fused, fused_op), want_fused, "{name}: fused ops on cpu");
    assert_eq!(count(&plain, fused_op), 0);
    let e = rel_err(&got, &want);
    let (kf, kp) = launches(&x.graph);
    println!("{name}: cpu fused vs as built rel err {e:.2e}; kernels {kp} -> {kf}");
    assert!(e < tol, "{name}: cpu fused vs unfused {e:e}");
    // The split-binding backend (1 KiB per binding, 32 bindings) only holds small cases.
    let small = x.inputs.iter().all(|(_, t)| t.desc.bytes() <= 4096);
    for (label, w) in [("wgpu", common::wgpu()), ("wgpu-split", common::wgpu_split().filter(|_| small))] {
        let Some(w) = w else { continue };
        let (gw, fw) = run(w, x, true);
        assert_eq!(count(&fw, fused_op), want_fused, "{name}: fused ops on {label}");
        let e = rel_err(&gw, &got);
        println!("{name}: {label} fused vs cpu fused rel err {e:.2e}");
        assert!(e < tol, "{name}: {label} fused vs cpu fused {e:e}");
        let (pw, _) = run(w, x, false);
        let e = rel_err(&gw, &pw);
        assert!(e < tol, "{name}: {label} fused vs {label} unfused {e:e}");
    }
}

fn is_moe(op: &Op) -> bool {
    matches!(op, Op::Moe { .. })
}

#[test]
fn moe_fusion_matches_the_composite() {
    use DType::{BF16, F32};
    let cases = [
        // (T, H, E, I, k, stored [E, out, in], dtype, routing)
        (1, 24, 6, 20, 2, false, F32, Routing::Random),
        (3, 8, 4, 6, 2, true, F32, Routing::Random), // small: also on split bindings
        (7, 40, 8, 36, 2, true, F32, Routing::Random),
        (37, 33, 5, 19, 3, false, F32, Routing::Random),
        (70, 64, 16, 72, 4, true, BF16, Routing::Random),
        (1, 24, 4, 12, 4, true, F32, Routing::Random), // top-k = experts, one token
        (9, 16, 4, 20, 4, false, F32, Routing::Random), // top-k = experts
        (19, 24, 6, 20, 1, false, F32, Routing::AllToZero), // one expert takes all, others none
        (33, 24, 6, 20, 2, true, BF16, Routing::AllToZero),
    ];
    for row in cases {
        let m = MoeCase::from(row);
        let name = m.name();
        let tol = if m.dtype == F32 { 1e-5 } else { 2e-2 };
        let x = m.build();
        check(&name, &x, is_moe, tol);
        // Everything between the input and the output is one launch.
        assert_eq!(launches(&x.graph).0, 1, "{name}: the whole MoE block is one kernel");
    }
}

#[test]
fn attention_fusion_matches_the_composite() {
    for (t, s) in [(1, 1), (1, 40), (7, 7), (7, 19), (129, 129)] {
        check(
            &format!("attention T{t} S{s} causal"),
            &fused::attention(t, s, None, false),
            |o| matches!(o, Op::Attention { .. }),
            1e-5,
        );
    }
    for (t, s) in [(1, 33), (9, 9)] {
        let x = fused::attention(t, s, None, true);
        check(
            &format!("attention T{t} S{s} tokens-first"),
            &x,
            |o| matches!(o, Op::Attention { tokens_first: true, .. }),
            1e-5,
        );
        assert_eq!(launches(&x.graph), (1, 6), "scores, scale, mask, softmax, PV and the transpose: one kernel");
    }
    let sizes = [16, 64, 4];
    let n = sizes.iter().sum();
    check(
        "attention packed images 16+64+4",
        &fused::attention(n, n, Some(&sizes), false),
        |o| matches!(o, Op::Attention { .. }),
        1e-5,
    );
}

#[test]
fn a_fused_op_the_backend_lacks_stays_primitives() {
    // wgpu's routing kernels hold at most 512 experts: beyond that the composite runs as is.
    let Some(w) = common::wgpu() else { return };
    let x = MoeCase::from((3, 8, 520, 4, 2, false, DType::F32, Routing::Random)).build();
    let (got, g) = run(w, &x, true);
    assert_eq!(count(&g, is_moe), 0, "no fused moe where the backend cannot run it");
    let (want, gc) = run(&CpuBackend::new(), &x, true);
    assert_eq!(count(&gc, is_moe), 1);
    assert!(rel_err(&got, &want) < 1e-5);
}

fn fixture_model(name: &str) -> lumen::model::qwen3_vl::Qwen3VL {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    lumen::model::qwen3_vl::Qwen3VL::load(&dir).unwrap()
}

/// Kernels per decoder layer of a decode step, fused and not.
fn decode_layer_kernels(model: &str, fuse: bool) -> (usize, usize) {
    use lumen::model::qwen3_vl::DecodeGraph;
    let m = fixture_model(model);
    let g = DecodeGraph::build(&m, 5, 9, 0).unwrap();
    let keep: Vec<_> = g.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
    let c = compile(&g.graph, &keep, &CpuBackend::new(), Options { fuse }).unwrap();
    range_of(&kernels_by_scope(&c), "text.layer").unwrap()
}

#[test]
fn kernel_counts_per_layer_are_pinned() {
    // A MoE decoder layer in decode: add + norm (x2), q/k/v projections, q/k norm + rope +
    // transpose (one kernel each), v's transpose, the KV append (2), attention writing
    // tokens-first, o_proj and ONE moe kernel.
    let (lo, hi) = decode_layer_kernels("qwen3vl-moe", true);
    let (plain_lo, _) = decode_layer_kernels("qwen3vl-moe", false);
    println!("moe decode: {lo}-{hi} kernels per layer fused, {plain_lo}+ as built");
    assert!(hi <= 13, "a fused MoE decoder layer launches at most 13 kernels, got {hi}");
    assert!(plain_lo >= hi + 15, "fusion removes the MoE and attention primitives");
    let (lo, hi) = decode_layer_kernels("qwen3vl-dense", true);
    println!("dense decode: {lo}-{hi} kernels per layer fused");
    assert!(hi <= 15, "a fused dense decoder layer launches at most 15 kernels, got {hi}");
}

fn is_elementwise(op: &Op) -> bool {
    matches!(op, Op::Elementwise { .. })
}

#[test]
fn elementwise_chains_fuse_into_one_kernel() {
    for dt in [DType::F32, DType::BF16] {
        let tol = if dt == DType::F32 { 1e-6 } else { 1e-2 };
        check(&format!("bias + gelu_erf {dt:?}"), &fused::bias_gelu(dt, [37, 19]), is_elementwise, tol);
        let built = fused::elementwise_chain(dt, [3, 5, 13]);
        check(&format!("4-input chain {dt:?}"), &built, is_elementwise, tol);
        assert_eq!(launches(&built.graph).0, 1, "the whole chain is one kernel");
    }
}

#[test]
fn an_elementwise_result_read_twice_is_kept() {
    use lumen::graph::UnaryOp;
    let mut c = Composite::new("read twice");
    let x = c.random("x", DType::F32, [4, 33], 2.0);
    let w = c.random("w", DType::F32, [33], 2.0);
    let g = &mut c.g;
    let h = g.unary(x, UnaryOp::Silu).unwrap();
    let h = g.scale(h, 3.0).unwrap(); // read by the two branches below
    let a = g.unary(h, UnaryOp::Exp).unwrap();
    let a = g.scale(a, 0.25).unwrap();
    let n = g.rms_norm(h, w, 1e-6).unwrap();
    let out = g.add(a, n).unwrap();
    let built = c.finish(out);
    let c = compile(&built.graph, &[], &CpuBackend::new(), Options::default()).unwrap();
    // silu*3 (one kernel, kept for two readers), rms_norm, exp*0.25+n (one kernel).
    assert_eq!(kernels(&c), 3);
    assert_eq!(count(&c.graph, is_elementwise), 2);
    let (want, _) = run(&CpuBackend::new(), &built, false);
    for b in [Some(&CpuBackend::new() as &dyn Backend), common::wgpu().map(|w| w as &dyn Backend)].into_iter().flatten()
    {
        let (got, _) = run(b, &built, true);
        assert!(rel_err(&got, &want) < 1e-6);
    }
}

fn is_add_norm(op: &Op) -> bool {
    matches!(op, Op::AddRmsNorm { .. })
}

#[test]
fn residual_add_and_rms_norm_fuse_with_the_sum_as_a_side_output() {
    for dt in [DType::F32, DType::BF16] {
        let tol = if dt == DType::F32 { 1e-6 } else { 1e-2 };
        let x = fused::residual_stream(dt, [5, 40], false);
        check_n(&format!("residual stream {dt:?}"), &x, is_add_norm, 2, tol);
        // add, norm, silu, add, norm, mul as built -> two add+norm kernels (each also writing
        // its sum), silu, mul.
        assert_eq!(launches(&x.graph), (4, 6), "{dt:?}");
        let c = compile(&x.graph, &[], &CpuBackend::new(), Options::default()).unwrap();
        assert_eq!(c.side.iter().flatten().count(), 2, "both sums are side outputs");
    }
    // A sum read before its norm cannot wait for the norm's kernel: that pair stays apart.
    let x = fused::residual_stream(DType::F32, [5, 40], true);
    check_n("residual stream read early", &x, is_add_norm, 1, 1e-6);
}

fn is_rope_heads(op: &Op) -> bool {
    matches!(op, Op::RopeHeads { .. })
}

#[test]
fn qk_norm_rope_and_head_transpose_fuse_into_one_kernel() {
    use lumen::graph::RopeStyle;
    for (t, heads, dim, r, style, norm, dtype, packed_qkv) in [
        (1, 4, 16, 16, RopeStyle::Half, true, DType::F32, false),
        (7, 3, 24, 16, RopeStyle::Half, true, DType::BF16, false), // partial rotary: 8 dims pass through
        (5, 2, 20, 12, RopeStyle::Interleaved, false, DType::F32, false),
        (9, 3, 16, 16, RopeStyle::Half, false, DType::F16, false),
        (6, 2, 16, 16, RopeStyle::Half, false, DType::F32, true), // heads sliced from a packed qkv
    ] {
        let positions = (0..t as u32).map(|p| vec![p * 3]).collect();
        let table = RopeTable::text(r, 1e4);
        let x = RopeHeadsCase { dtype, heads, dim, table, positions, style, norm, packed_qkv };
        let name = format!("rope heads T{t} H{heads} D{dim} R{r} {style:?} norm {norm} {dtype:?} packed {packed_qkv}");
        let built = x.build(&name);
        check(&name, &built, is_rope_heads, if dtype == DType::F32 { 1e-6 } else { 1e-2 });
        assert_eq!(launches(&built.graph).0, 1 + packed_qkv as usize, "{name}");
        assert_eq!(launches(&built.graph).1, 2 + norm as usize + packed_qkv as usize, "{name}");
    }
}

#[test]
fn peak_activation_memory_does_not_grow_with_depth() {
    use lumen::model::qwen3_vl::PrefillGraph;
    use lumen::model::synthetic::{self, SyntheticSpec};
    let root = common::scratch::Scratch::new("fusion-depth");
    let mut peak = Vec::new();
    for layers in [1, 2, 4, 8] {
        let spec = SyntheticSpec { layers, hidden: 64, intermediate: 128, head_dim: 16, ..SyntheticSpec::small_moe() };
        let dir = root.join(format!("l{layers}"));
        synthetic::write(&dir, &spec, 3).unwrap();
        let m = lumen::model::qwen3_vl::Qwen3VL::load(&dir).unwrap();
        let ids: Vec<u32> = (0..48).map(|i| 1 + i % 100).collect();
        let p = PrefillGraph::build(&m, &lumen::model::qwen3_vl::PrefillInputs { ids, images: vec![] }, false).unwrap();
        let c = compile(&p.graph, &[], &CpuBackend::new(), Options::default()).unwrap();
        let all: usize =
            c.graph.nodes().iter().filter(|n| !matches!(n.op, Op::Input { .. })).map(|n| n.desc.bytes()).sum();
        println!("{layers} layers: peak activations {} bytes of {all} computed", c.plan.peak_bytes());
        peak.push(c.plan.peak_bytes());
    }
    // Slots are reused layer after layer: from two layers on (the residual stream then enters a
    // layer from an earlier one) the peak stays flat, and within a small multiple of one layer.
    assert!(peak[1] == peak[2] && peak[2] == peak[3], "peak grew with depth: {peak:?}");
    assert!(peak[3] <= 2 * peak[0], "{peak:?}");
}

fn is_epilogue(op: &Op) -> bool {
    matches!(op, Op::MatMulEpilogue { .. })
}

#[test]
fn projections_take_their_bias_activation_and_residual_as_an_epilogue() {
    for (m, dt) in [(3, DType::F32), (37, DType::F32), (70, DType::BF16), (2, DType::BF16)] {
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-2 };
        // fc1 + bias -> gelu (one extra input) and fc2 + bias + residual (two).
        let built = fused::mlp_epilogues(dt, m, [40, 72]);
        check_n(&format!("mlp epilogues M{m} {dt:?}"), &built, is_epilogue, 2, tol);
        assert_eq!(launches(&built.graph), (2, 6));
    }
    // An epilogue with no extra input (scaled scores, as unfused attention computes them).
    let built = fused::scaled_scores(DType::F32, [2, 5, 7, 16]);
    check("batched matmul + scale + exp", &built, is_epilogue, 1e-5);
    assert_eq!(launches(&built.graph), (1, 3));
    // Three extra inputs do not fit an epilogue: the chain fuses on its own, the matmul stays.
    let mut c = Composite::new("three extra inputs");
    let x = c.random("x", DType::F32, [9, 16], 2.0);
    let w = c.random("w", DType::F32, [24, 16], 2.0);
    let extra: Vec<NodeId> = (0..3).map(|i| c.random(&format!("e{i}"), DType::F32, [24], 2.0)).collect();
    let mut y = c.g.linear(x, w).unwrap();
    for e in extra {
        y = c.g.mul(y, e).unwrap();
    }
    let built = c.finish(y);
    check("matmul + 3-input chain", &built, is_elementwise, 1e-5);
    assert_eq!(launches(&built.graph), (2, 4));
    // A dense MLP: one projection is the SwiGLU epilogue's product, the other its input; the
    // down projection takes the residual.
    let built = fused::swiglu_mlp(DType::F32, 5, [40, 72]);
    check_n("swiglu mlp + residual", &built, is_epilogue, 2, 1e-5);
    assert_eq!(launches(&built.graph), (3, 5));
}
