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
use lumen::graph::{moe_tables, DType, Graph, GraphBuilder, NodeId, Op};
use lumen::HostTensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Built {
    graph: Graph,
    out: NodeId,
    inputs: Vec<(String, HostTensor)>,
}

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

#[derive(Clone, Copy)]
enum Routing {
    Random,
    /// Every token's best expert is expert 0 (so with top-1 every other expert gets nothing).
    AllToZero,
}

#[allow(clippy::too_many_arguments)]
fn moe_case(t: usize, h: usize, e: usize, i: usize, k: usize, trans: bool, dt: DType, routing: Routing) -> Built {
    let mut rng = StdRng::seed_from_u64((t * 131 + h * 17 + e * 7 + i * 3 + k) as u64 + trans as u64);
    let mut g = GraphBuilder::new();
    let mut inputs = Vec::new();
    let mut add = |g: &mut GraphBuilder, name: &str, t: HostTensor| {
        let id = g.input(name, t.desc.clone()).unwrap();
        inputs.push((name.to_string(), t));
        id
    };
    let mut rand = |n: usize, lo: f32, hi: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(lo..hi)).collect() };
    let (xv, rv) = match routing {
        Routing::Random => (rand(t * h, -1.0, 1.0), rand(e * h, -1.0, 1.0)),
        Routing::AllToZero => {
            let mut r = rand(e * h, -1.0, 0.0);
            r[..h].iter_mut().for_each(|v| *v = 1.0);
            (rand(t * h, 0.1, 1.0), r)
        }
    };
    let x = add(&mut g, "x", HostTensor::from_f32(dt, [t, h], &xv).unwrap());
    let router = add(&mut g, "router", HostTensor::from_f32(dt, [e, h], &rv).unwrap());
    let (gu_shape, dn_shape) = if trans { ([e, 2 * i, h], [e, h, i]) } else { ([e, h, 2 * i], [e, i, h]) };
    let s = 1.0 / (h as f32).sqrt();
    let gu = add(&mut g, "gate_up", HostTensor::from_f32(dt, gu_shape, &rand(e * h * 2 * i, -s, s)).unwrap());
    let dn = add(&mut g, "down", HostTensor::from_f32(dt, dn_shape, &rand(e * h * i, -s, s)).unwrap());
    let (ones, offsets) = moe_tables(t, e, k).unwrap();
    let ones = add(&mut g, "ones", ones);
    let offsets = add(&mut g, "offsets", offsets);
    let out = g.moe(x, router, gu, dn, k, trans, ones, offsets).unwrap();
    g.output(out).unwrap();
    Built { graph: g.build(), out, inputs }
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
    for (t, h, e, i, k, trans, dt, routing) in cases {
        let name = format!("moe T{t} H{h} E{e} I{i} k{k} {} {dt:?}", if trans { "out-in" } else { "in-out" });
        let tol = if dt == F32 { 1e-5 } else { 2e-2 };
        let x = moe_case(t, h, e, i, k, trans, dt, routing);
        check(&name, &x, is_moe, tol);
        // Everything between the input and the output is one launch.
        assert_eq!(launches(&x.graph).0, 1, "{name}: the whole MoE block is one kernel");
    }
}

fn attention_case(t: usize, s: usize, images: Option<&[usize]>) -> Built {
    attention_case_with(t, s, images, false)
}

/// With `permute` the output goes through the tokens-first transpose the models apply.
fn attention_case_with(t: usize, s: usize, images: Option<&[usize]>, permute: bool) -> Built {
    let (hq, hkv, d) = (4, 2, 24);
    let mut rng = StdRng::seed_from_u64((t * 7 + s) as u64);
    let mut g = GraphBuilder::new();
    let mut inputs = Vec::new();
    let mut input = |g: &mut GraphBuilder, name: &str, shape: [usize; 3]| {
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let t = HostTensor::from_f32(DType::F32, shape, &v).unwrap();
        let id = g.input(name, t.desc.clone()).unwrap();
        inputs.push((name.to_string(), t));
        id
    };
    let q = input(&mut g, "q", [hq, t, d]);
    let k = input(&mut g, "k", [hkv, s, d]);
    let v = input(&mut g, "v", [hkv, s, d]);
    // A causal mask (queries are the last t of s positions), or a block-diagonal one for
    // packed images attending within themselves.
    let mut m = vec![0f32; t * s];
    for r in 0..t {
        for c in 0..s {
            let hidden = match images {
                None => c > r + s - t,
                Some(sizes) => {
                    let block = |p: usize| {
                        sizes
                            .iter()
                            .scan(0, |a, n| {
                                *a += n;
                                Some(*a)
                            })
                            .position(|end| p < end)
                    };
                    block(r) != block(c)
                }
            };
            if hidden {
                m[r * s + c] = f32::NEG_INFINITY;
            }
        }
    }
    let mask = HostTensor::from_f32(DType::F32, [t, s], &m).unwrap();
    let mk = g.input("mask", mask.desc.clone()).unwrap();
    inputs.push(("mask".into(), mask));
    let mut out = g.attention(q, k, v, Some(mk), (d as f32).powf(-0.5)).unwrap();
    if permute {
        out = g.permute(out, &[1, 0, 2]).unwrap();
    }
    g.output(out).unwrap();
    Built { graph: g.build(), out, inputs }
}

#[test]
fn attention_fusion_matches_the_composite() {
    for (t, s) in [(1, 1), (1, 40), (7, 7), (7, 19), (129, 129)] {
        check(
            &format!("attention T{t} S{s} causal"),
            &attention_case(t, s, None),
            |o| matches!(o, Op::Attention { .. }),
            1e-5,
        );
    }
    for (t, s) in [(1, 33), (9, 9)] {
        let x = attention_case_with(t, s, None, true);
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
        &attention_case(n, n, Some(&sizes)),
        |o| matches!(o, Op::Attention { .. }),
        1e-5,
    );
}

#[test]
fn a_fused_op_the_backend_lacks_stays_primitives() {
    // wgpu's routing kernels hold at most 512 experts: beyond that the composite runs as is.
    let Some(w) = common::wgpu() else { return };
    let x = moe_case(3, 8, 520, 4, 2, false, DType::F32, Routing::Random);
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

fn random_input(
    g: &mut GraphBuilder,
    inputs: &mut Vec<(String, HostTensor)>,
    name: &str,
    dt: DType,
    shape: &[usize],
) -> NodeId {
    let mut rng = StdRng::seed_from_u64(name.len() as u64 * 977 + shape.iter().sum::<usize>() as u64);
    let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random_range(-2.0..2.0)).collect();
    let t = HostTensor::from_f32(dt, shape.to_vec(), &v).unwrap();
    let id = g.input(name, t.desc.clone()).unwrap();
    inputs.push((name.to_string(), t));
    id
}

fn is_elementwise(op: &Op) -> bool {
    matches!(op, Op::Elementwise { .. })
}

#[test]
fn elementwise_chains_fuse_into_one_kernel() {
    use lumen::graph::{BinaryOp, UnaryOp};
    for dt in [DType::F32, DType::BF16] {
        let tol = if dt == DType::F32 { 1e-6 } else { 1e-2 };
        // A vision MLP's bias + exact GELU.
        let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
        let x = random_input(&mut g, &mut inputs, "x", dt, &[37, 19]);
        let b = random_input(&mut g, &mut inputs, "b", dt, &[19]);
        let y = g.add(x, b).unwrap();
        let out = g.unary(y, UnaryOp::GeluErf).unwrap();
        g.output(out).unwrap();
        check(&format!("bias + gelu_erf {dt:?}"), &Built { graph: g.build(), out, inputs }, is_elementwise, tol);

        // Four inputs, broadcasting on both sides, every instruction kind, casts in between.
        let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
        let a = random_input(&mut g, &mut inputs, "a", dt, &[3, 1, 13]);
        let b = random_input(&mut g, &mut inputs, "b", DType::F32, &[5, 1]);
        let c = random_input(&mut g, &mut inputs, "c", dt, &[3, 5, 13]);
        let d = random_input(&mut g, &mut inputs, "d", dt, &[13]);
        let s = g.scale(a, 0.5).unwrap();
        let s = g.push(Op::Binary(BinaryOp::Sub), &[s, b]).unwrap(); // [3, 5, 13]
        let t = g.unary(c, UnaryOp::Silu).unwrap();
        let t = g.push(Op::Cast(DType::F16), &[t]).unwrap();
        let t = g.push(Op::Cast(DType::F32), &[t]).unwrap();
        let u = g.mul(s, t).unwrap();
        let e = g.unary(d, UnaryOp::Neg).unwrap();
        let e = g.unary(e, UnaryOp::Exp).unwrap();
        let v = g.push(Op::Binary(BinaryOp::Div), &[u, e]).unwrap();
        let w = g.swiglu(v, c).unwrap();
        let out = g.unary(w, UnaryOp::Gelu).unwrap();
        g.output(out).unwrap();
        let built = Built { graph: g.build(), out, inputs };
        check(&format!("4-input chain {dt:?}"), &built, is_elementwise, tol);
        assert_eq!(launches(&built.graph).0, 1, "the whole chain is one kernel");
    }
}

#[test]
fn an_elementwise_result_read_twice_is_kept() {
    use lumen::graph::UnaryOp;
    let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
    let x = random_input(&mut g, &mut inputs, "x", DType::F32, &[4, 33]);
    let h = g.unary(x, UnaryOp::Silu).unwrap();
    let h = g.scale(h, 3.0).unwrap(); // read by the two branches below
    let a = g.unary(h, UnaryOp::Exp).unwrap();
    let a = g.scale(a, 0.25).unwrap();
    let w = random_input(&mut g, &mut inputs, "w", DType::F32, &[33]);
    let n = g.rms_norm(h, w, 1e-6).unwrap();
    let out = g.add(a, n).unwrap();
    g.output(out).unwrap();
    let built = Built { graph: g.build(), out, inputs };
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

/// Two pre-norm "layers" over a residual stream: h1 = x + a; n1 = norm(h1); h2 = h1 + f(n1);
/// n2 = norm(h2); out = n2 * h2. When `early` the first sum is also read before its norm.
fn residual_case(dt: DType, early: bool) -> Built {
    use lumen::graph::UnaryOp;
    let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
    let x = random_input(&mut g, &mut inputs, "x", dt, &[5, 40]);
    let a = random_input(&mut g, &mut inputs, "a", dt, &[5, 40]);
    let w1 = random_input(&mut g, &mut inputs, "w1", dt, &[40]);
    let w2 = random_input(&mut g, &mut inputs, "w2", dt, &[40]);
    let h1 = g.add(x, a).unwrap();
    let pre = if early { Some(g.unary(h1, UnaryOp::Exp).unwrap()) } else { None };
    let n1 = g.rms_norm(h1, w1, 1e-6).unwrap();
    let f = g.unary(n1, UnaryOp::Silu).unwrap();
    let f = match pre {
        Some(p) => g.mul(f, p).unwrap(),
        None => f,
    };
    let h2 = g.add(h1, f).unwrap();
    let n2 = g.rms_norm(h2, w2, 1e-6).unwrap();
    let out = g.mul(n2, h2).unwrap();
    g.output(out).unwrap();
    Built { graph: g.build(), out, inputs }
}

fn is_add_norm(op: &Op) -> bool {
    matches!(op, Op::AddRmsNorm { .. })
}

#[test]
fn residual_add_and_rms_norm_fuse_with_the_sum_as_a_side_output() {
    for dt in [DType::F32, DType::BF16] {
        let tol = if dt == DType::F32 { 1e-6 } else { 1e-2 };
        let x = residual_case(dt, false);
        check_n(&format!("residual stream {dt:?}"), &x, is_add_norm, 2, tol);
        // add, norm, silu, add, norm, mul as built -> two add+norm kernels (each also writing
        // its sum), silu, mul.
        assert_eq!(launches(&x.graph), (4, 6), "{dt:?}");
        let c = compile(&x.graph, &[], &CpuBackend::new(), Options::default()).unwrap();
        assert_eq!(c.side.iter().flatten().count(), 2, "both sums are side outputs");
    }
    // A sum read before its norm cannot wait for the norm's kernel: that pair stays apart.
    let x = residual_case(DType::F32, true);
    check_n("residual stream read early", &x, is_add_norm, 1, 1e-6);
}

fn is_rope_heads(op: &Op) -> bool {
    matches!(op, Op::RopeHeads { .. })
}

#[test]
fn qk_norm_rope_and_head_transpose_fuse_into_one_kernel() {
    use lumen::graph::RopeStyle;
    for (t, h, d, r, style, norm, dt) in [
        (1, 4, 16, 16, RopeStyle::Half, true, DType::F32),
        (7, 3, 24, 16, RopeStyle::Half, true, DType::BF16), // partial rotary: 8 dims pass through
        (5, 2, 20, 12, RopeStyle::Interleaved, false, DType::F32),
        (9, 3, 16, 16, RopeStyle::Half, false, DType::F16),
    ] {
        let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
        let x = random_input(&mut g, &mut inputs, "x", dt, &[t, h, d]);
        let cos = random_input(&mut g, &mut inputs, "cos", DType::F32, &[t, r / 2]);
        let sin = random_input(&mut g, &mut inputs, "sin", DType::F32, &[t, r / 2]);
        let mut y = x;
        if norm {
            let w = random_input(&mut g, &mut inputs, "w", dt, &[d]);
            y = g.rms_norm(y, w, 1e-6).unwrap();
        }
        let y = g.rope(y, cos, sin, style).unwrap();
        let out = g.permute(y, &[1, 0, 2]).unwrap();
        g.output(out).unwrap();
        let built = Built { graph: g.build(), out, inputs };
        let name = format!("rope heads T{t} H{h} D{d} R{r} {style:?} norm {norm} {dt:?}");
        check(&name, &built, is_rope_heads, if dt == DType::F32 { 1e-6 } else { 1e-2 });
        assert_eq!(launches(&built.graph), (1, 2 + norm as usize), "{name}");
    }
}

#[test]
fn peak_activation_memory_does_not_grow_with_depth() {
    use lumen::model::qwen3_vl::PrefillGraph;
    use lumen::model::synthetic::{self, SyntheticSpec};
    let root = std::env::temp_dir().join(format!("lumen-fusion-depth-{}", std::process::id()));
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
    let _ = std::fs::remove_dir_all(&root);
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
    use lumen::graph::UnaryOp;
    for (m, dt) in [(3, DType::F32), (37, DType::F32), (70, DType::BF16), (2, DType::BF16)] {
        let tol = if dt == DType::F32 { 1e-5 } else { 1e-2 };
        // fc1 + bias -> gelu (one extra input) and fc2 + bias + residual (two).
        let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
        let x = random_input(&mut g, &mut inputs, "x", dt, &[m, 40]);
        let w1 = random_input(&mut g, &mut inputs, "w1", dt, &[72, 40]);
        let b1 = random_input(&mut g, &mut inputs, "b1", dt, &[72]);
        let w2 = random_input(&mut g, &mut inputs, "w2", dt, &[40, 72]);
        let b2 = random_input(&mut g, &mut inputs, "b2", dt, &[40]);
        let h = g.linear(x, w1).unwrap();
        let h = g.add(h, b1).unwrap();
        let h = g.unary(h, UnaryOp::Gelu).unwrap();
        let y = g.linear(h, w2).unwrap();
        let y = g.add(y, b2).unwrap();
        let out = g.add(x, y).unwrap();
        g.output(out).unwrap();
        let built = Built { graph: g.build(), out, inputs };
        check_n(&format!("mlp epilogues M{m} {dt:?}"), &built, is_epilogue, 2, tol);
        assert_eq!(launches(&built.graph), (2, 6));
    }
    // An epilogue with no extra input (scaled scores, as unfused attention computes them).
    let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
    let x = random_input(&mut g, &mut inputs, "x", DType::F32, &[2, 5, 16]);
    let w = random_input(&mut g, &mut inputs, "w", DType::F32, &[2, 7, 16]);
    let y = g.matmul(x, w, true).unwrap();
    let y = g.scale(y, 0.25).unwrap();
    let y = g.unary(y, UnaryOp::Exp).unwrap();
    g.output(y).unwrap();
    let built = Built { graph: g.build(), out: y, inputs };
    check("batched matmul + scale + exp", &built, is_epilogue, 1e-5);
    assert_eq!(launches(&built.graph), (1, 3));
    // Three extra inputs do not fit an epilogue: the chain fuses on its own, the matmul stays.
    let (mut g, mut inputs) = (GraphBuilder::new(), Vec::new());
    let x = random_input(&mut g, &mut inputs, "x", DType::F32, &[9, 16]);
    let w = random_input(&mut g, &mut inputs, "w", DType::F32, &[24, 16]);
    let extra: Vec<NodeId> =
        (0..3).map(|i| random_input(&mut g, &mut inputs, &format!("e{i}"), DType::F32, &[24])).collect();
    let mut y = g.linear(x, w).unwrap();
    for e in extra {
        y = g.mul(y, e).unwrap();
    }
    g.output(y).unwrap();
    let built = Built { graph: g.build(), out: y, inputs };
    check("matmul + 3-input chain", &built, is_elementwise, 1e-5);
    assert_eq!(launches(&built.graph), (2, 4));
}
