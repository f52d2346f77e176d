//! The composites the compiler fuses, built as the models build them (seeded random inputs):
//! what `fused_cases.rs` and `tests/fusion.rs` compile, run and compare.

use super::seed_of;
use crate::graph::rope::RopeTable;
use crate::graph::{
    moe_tables, BinaryOp, DType, Graph, GraphBuilder, NodeId, Op, QWeight, RopeStyle, Shape, TensorDesc, UnaryOp,
};
use crate::quant::{quantize, QFormat};
use crate::HostTensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A graph over named inputs with their values, and the node to read.
pub struct Built {
    /// The graph as built (unfused).
    pub graph: Graph,
    /// Its output.
    pub out: NodeId,
    /// Every input's name and value.
    pub inputs: Vec<(String, HostTensor)>,
}

/// Builds a graph while declaring its inputs and their (seeded) values.
pub struct Composite {
    /// The graph being built.
    pub g: GraphBuilder,
    pub(super) inputs: Vec<(String, HostTensor)>,
    rng: StdRng,
}

impl Composite {
    /// An empty graph whose random values are seeded by `name`.
    pub fn new(name: &str) -> Self {
        Composite { g: GraphBuilder::new(), inputs: vec![], rng: StdRng::seed_from_u64(seed_of(name)) }
    }

    /// `n` values uniform in [lo, hi).
    pub fn values(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.rng.random_range(lo..hi)).collect()
    }

    /// A float input with values uniform in [-amp, amp).
    pub fn random(&mut self, name: &str, dtype: DType, shape: impl Into<Shape>, amp: f32) -> NodeId {
        let shape = shape.into();
        let v = self.values(shape.numel(), -amp, amp);
        self.given(name, HostTensor::from_f32(dtype, shape, &v).expect("sizes match"))
    }

    /// An i32 input with values uniform in [0, hi).
    pub fn ints(&mut self, name: &str, shape: impl Into<Shape>, hi: i32) -> NodeId {
        let shape = shape.into();
        let v: Vec<i32> = (0..shape.numel()).map(|_| self.rng.random_range(0..hi)).collect();
        self.given(name, HostTensor::from_i32(shape, &v).expect("sizes match"))
    }

    /// An input with the given values.
    pub fn given(&mut self, name: &str, t: HostTensor) -> NodeId {
        let id = self.g.input(name, t.desc.clone()).expect("fresh input name");
        self.inputs.push((name.into(), t));
        id
    }

    /// The graph with `out` as its output.
    pub fn finish(mut self, out: NodeId) -> Built {
        self.g.output(out).expect("a node of this graph");
        Built { graph: self.g.build(), out, inputs: self.inputs }
    }
}

/// How a MoE case's router sends tokens to experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Random router and activations.
    Random,
    /// Every token's best expert is expert 0 (with top-1 every other expert gets nothing).
    AllToZero,
}

/// A mixture-of-experts MLP (`GraphBuilder::moe`): T tokens of width H, E experts of
/// intermediate size I, top-k, expert stacks stored `[E, out, in]` when `trans_b`.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct MoeCase {
    pub t: usize,
    pub h: usize,
    pub e: usize,
    pub i: usize,
    pub k: usize,
    pub trans_b: bool,
    pub dtype: DType,
    pub routing: Routing,
}

/// A [`MoeCase`] as case tables list it: (T, H, E, I, k, trans_b, dtype, routing).
pub type MoeRow = (usize, usize, usize, usize, usize, bool, DType, Routing);

impl From<MoeRow> for MoeCase {
    fn from((t, h, e, i, k, trans_b, dtype, routing): MoeRow) -> Self {
        MoeCase { t, h, e, i, k, trans_b, dtype, routing }
    }
}

impl MoeCase {
    /// A name saying the shape.
    pub fn name(&self) -> String {
        let MoeCase { t, h, e, i, k, trans_b, dtype, routing } = *self;
        let layout = if trans_b { "out_in" } else { "in_out" };
        let skew = if routing == Routing::AllToZero { "_all_to_expert_0" } else { "" };
        format!("moe_T{t}_H{h}_E{e}_I{i}_k{k}_{layout}_{dtype:?}{skew}")
    }

    /// The composite.
    pub fn build(&self) -> Built {
        let MoeCase { t, h, e, i, k, trans_b, dtype, routing } = *self;
        let mut c = Composite::new(&self.name());
        let (xv, rv) = match routing {
            Routing::Random => (c.values(t * h, -1.0, 1.0), c.values(e * h, -1.0, 1.0)),
            Routing::AllToZero => {
                let mut r = c.values(e * h, -1.0, 0.0);
                r[..h].iter_mut().for_each(|v| *v = 1.0);
                (c.values(t * h, 0.1, 1.0), r)
            }
        };
        let x = c.given("x", HostTensor::from_f32(dtype, [t, h], &xv).expect("sizes match"));
        let router = c.given("router", HostTensor::from_f32(dtype, [e, h], &rv).expect("sizes match"));
        let (gu_shape, dn_shape) = if trans_b { ([e, 2 * i, h], [e, h, i]) } else { ([e, h, 2 * i], [e, i, h]) };
        let s = 1.0 / (h as f32).sqrt();
        let gu = c.random("gate_up", dtype, gu_shape, s);
        let dn = c.random("down", dtype, dn_shape, s);
        let (ones, offsets) = moe_tables(t, e, k).expect("valid moe dims");
        let ones = c.given("ones", ones);
        let offsets = c.given("offsets", offsets);
        let out = c.g.moe(x, router, gu, dn, k, trans_b, ones, offsets).expect("valid moe");
        c.finish(out)
    }

    /// The composite over quantized experts: the case's shapes (stored `[E, out, in]` whatever
    /// `trans_b` says), seeded weights quantized on the host to `format` in groups of `group`.
    pub fn build_quantized(&self, format: QFormat, group: usize) -> Built {
        let MoeCase { t, h, e, i, k, dtype, .. } = *self;
        let name = format!("q{}_g{group}_{}", format.name(), self.name());
        let mut c = Composite::new(&name);
        let x = c.random("x", dtype, [t, h], 1.0);
        let router = c.random("router", dtype, [e, h], 1.0);
        let s = 1.0 / (h as f32).sqrt();
        // Expert by expert, so that NVFP4 has a global scale per expert.
        let stack = |c: &mut Composite, what: &str, rows: usize, cols: usize| {
            let (mut codes, mut scales, mut globals) = (Vec::new(), Vec::new(), Vec::new());
            // Experts of different ranges, so that a kernel reading another expert's scales
            // (NVFP4's global ones especially) shows.
            for x in 0..e {
                let amp = s * (1 << (x % 3)) as f32;
                let w = c.values(rows * cols, -amp, amp);
                let q = quantize(&w, rows, cols, format, group).expect("quantizable case");
                codes.extend(q.codes.iter().copied());
                scales.extend(q.scales_tensor().expect("sizes match").bytes);
                globals.push(q.global);
            }
            let codes = HostTensor::from_u32([e, rows, cols / format.per_word()], &codes).expect("sizes match");
            let sd = TensorDesc::new(format.scale_dtype(), [e, rows, cols / group / format.scales_per_word()]);
            let scales = HostTensor::from_bytes(sd, scales).expect("sizes match");
            let codes = c.given(&format!("{what}:codes"), codes);
            let scales = c.given(&format!("{what}:scales"), scales);
            let global = format.has_global().then(|| {
                c.given(
                    &format!("{what}:global"),
                    HostTensor::from_f32(DType::F32, [e], &globals).expect("sizes match"),
                )
            });
            QWeight { codes, scales, global, format, group }
        };
        let gu = stack(&mut c, "gate_up", 2 * i, h);
        let dn = stack(&mut c, "down", h, i);
        let (ones, offsets) = moe_tables(t, e, k).expect("valid moe dims");
        let ones = c.given("ones", ones);
        let offsets = c.given("offsets", offsets);
        let out = c.g.qmoe(x, router, gu, dn, k, ones, offsets).expect("valid qmoe");
        c.finish(out)
    }
}

/// Attention as the models build it (4 query heads over 2 KV heads of 24 dims): causal (the
/// queries are the last `t` of `s` positions) or, with `images`, block-diagonal over packed
/// images; with `tokens_first` the output goes through the transpose the models apply.
pub fn attention(t: usize, s: usize, images: Option<&[usize]>, tokens_first: bool) -> Built {
    let (hq, hkv, d) = (4, 2, 24);
    let mut c = Composite::new(&format!("attention {t} {s} {images:?}"));
    let q = c.random("q", DType::F32, [hq, t, d], 1.0);
    let k = c.random("k", DType::F32, [hkv, s, d], 1.0);
    let v = c.random("v", DType::F32, [hkv, s, d], 1.0);
    let block = |p: usize| {
        let mut ends = images.unwrap_or(&[]).iter().scan(0, |end, n| {
            *end += n;
            Some(*end)
        });
        ends.position(|end| p < end)
    };
    let mut m = vec![0f32; t * s];
    for r in 0..t {
        for col in 0..s {
            let hidden = if images.is_some() { block(r) != block(col) } else { col > r + s - t };
            if hidden {
                m[r * s + col] = f32::NEG_INFINITY;
            }
        }
    }
    let mask = c.given("mask", HostTensor::from_f32(DType::F32, [t, s], &m).expect("sizes match"));
    let mut out = c.g.attention(q, k, v, Some(mask), (d as f32).powf(-0.5)).expect("valid attention");
    if tokens_first {
        out = c.g.permute(out, &[1, 0, 2]).expect("3-d");
    }
    c.finish(out)
}

/// Per-head rotary as the models apply it: text heads (`[T, heads, dim]` from a projection,
/// optionally Qwen3's per-head RMSNorm first) or, with `packed_qkv`, heads sliced out of the
/// vision tower's packed `[T, 3, heads, dim]` projection; then heads-first for attention.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct RopeHeadsCase {
    pub dtype: DType,
    pub heads: usize,
    pub dim: usize,
    pub table: RopeTable,
    /// One position (per table axis) per token.
    pub positions: Vec<Vec<u32>>,
    pub style: RopeStyle,
    pub norm: bool,
    pub packed_qkv: bool,
}

impl RopeHeadsCase {
    /// The composite, seeded by `name`.
    pub fn build(&self, name: &str) -> Built {
        let (t, h, d, dt) = (self.positions.len(), self.heads, self.dim, self.dtype);
        let mut c = Composite::new(name);
        let mut x = if self.packed_qkv {
            let qkv = c.random("qkv", dt, [t, 3, h, d], 2.0);
            let k = c.g.slice(qkv, 1, 1, 1).expect("in range");
            c.g.reshape(k, [t, h, d]).expect("same size")
        } else {
            c.random("x", dt, [t, h, d], 2.0)
        };
        let (cos, sin) = self.table.cos_sin(&self.positions).expect("positions match the table");
        let pairs = self.table.pairs();
        let cos = c.given("cos", HostTensor::from_f32(DType::F32, [t, pairs], &cos).expect("sizes match"));
        let sin = c.given("sin", HostTensor::from_f32(DType::F32, [t, pairs], &sin).expect("sizes match"));
        if self.norm {
            let w = c.random("w", dt, [d], 2.0);
            x = c.g.rms_norm(x, w, 1e-6).expect("valid norm");
        }
        let y = c.g.rope(x, cos, sin, self.style).expect("valid rope");
        let out = c.g.permute(y, &[1, 0, 2]).expect("3-d");
        c.finish(out)
    }
}

/// Two pre-norm "layers" over a residual stream `[rows, cols]`: h1 = x + a; n1 = norm(h1);
/// h2 = h1 + silu(n1); n2 = norm(h2); out = n2 * h2, so each sum is read after its norm. When
/// `early` the first sum is also read before its norm.
pub fn residual_stream(dt: DType, [rows, cols]: [usize; 2], early: bool) -> Built {
    let mut c = Composite::new(&format!("residual {dt:?} {rows} {cols} {early}"));
    let x = c.random("x", dt, [rows, cols], 2.0);
    let a = c.random("a", dt, [rows, cols], 2.0);
    let w1 = c.random("w1", dt, [cols], 2.0);
    let w2 = c.random("w2", dt, [cols], 2.0);
    let g = &mut c.g;
    let h1 = g.add(x, a).unwrap();
    let pre = early.then(|| g.unary(h1, UnaryOp::Exp).unwrap());
    let n1 = g.rms_norm(h1, w1, 1e-6).unwrap();
    let mut f = g.unary(n1, UnaryOp::Silu).unwrap();
    if let Some(p) = pre {
        f = g.mul(f, p).unwrap();
    }
    let h2 = g.add(h1, f).unwrap();
    let n2 = g.rms_norm(h2, w2, 1e-6).unwrap();
    let out = g.mul(n2, h2).unwrap();
    c.finish(out)
}

/// A vision MLP's bias + exact GELU over `[rows, cols]`.
pub fn bias_gelu(dt: DType, [rows, cols]: [usize; 2]) -> Built {
    let mut c = Composite::new(&format!("bias gelu {dt:?} {rows} {cols}"));
    let x = c.random("x", dt, [rows, cols], 2.0);
    let b = c.random("b", dt, [cols], 2.0);
    let y = c.g.add(x, b).unwrap();
    let out = c.g.unary(y, UnaryOp::GeluErf).unwrap();
    c.finish(out)
}

/// Four inputs (`[a, 1, n]`, f32 `[b, 1]`, `[a, b, n]`, `[n]`) broadcast on both sides through
/// every instruction kind, with an f16 round trip and a SwiGLU in between.
pub fn elementwise_chain(dt: DType, [a, b, n]: [usize; 3]) -> Built {
    let mut c = Composite::new(&format!("chain {dt:?} {a} {b} {n}"));
    let x = c.random("a", dt, [a, 1, n], 2.0);
    let y = c.random("b", DType::F32, [b, 1], 2.0);
    let z = c.random("c", dt, [a, b, n], 2.0);
    let w = c.random("d", dt, [n], 2.0);
    let g = &mut c.g;
    let s = g.scale(x, 0.5).unwrap();
    let s = g.push(Op::Binary(BinaryOp::Sub), &[s, y]).unwrap();
    let t = g.unary(z, UnaryOp::Silu).unwrap();
    let t = g.push(Op::Cast(DType::F16), &[t]).unwrap();
    let t = g.push(Op::Cast(DType::F32), &[t]).unwrap();
    let u = g.mul(s, t).unwrap();
    let e = g.unary(w, UnaryOp::Neg).unwrap();
    let e = g.unary(e, UnaryOp::Exp).unwrap();
    let v = g.push(Op::Binary(BinaryOp::Div), &[u, e]).unwrap();
    let v = g.swiglu(v, z).unwrap();
    let out = g.unary(v, UnaryOp::Gelu).unwrap();
    c.finish(out)
}

/// A short chain: `[a, 1, n] - [b, 1]` (f32), through f16 and back, then SwiGLU with
/// `[a, b, n]`; the program stays small even with every inner result rounded to 16 bits.
pub fn rounded_swiglu(dt: DType, [a, b, n]: [usize; 3]) -> Built {
    let mut c = Composite::new(&format!("rounded swiglu {dt:?} {a} {b} {n}"));
    let x = c.random("a", dt, [a, 1, n], 2.0);
    let y = c.random("b", DType::F32, [b, 1], 2.0);
    let u = c.random("c", dt, [a, b, n], 2.0);
    let g = &mut c.g;
    let s = g.push(Op::Binary(BinaryOp::Sub), &[x, y]).unwrap();
    let s = g.push(Op::Cast(DType::F16), &[s]).unwrap();
    let s = g.push(Op::Cast(dt), &[s]).unwrap();
    let out = g.swiglu(s, u).unwrap();
    c.finish(out)
}

/// A vision MLP block on `[m, h]`: fc1 (`[i, h]`) + bias -> tanh GELU, fc2 + bias, + the
/// residual: two matmul epilogues (one extra input, then two).
pub fn mlp_epilogues(dt: DType, m: usize, [h, i]: [usize; 2]) -> Built {
    let mut c = Composite::new(&format!("mlp {dt:?} {m} {h} {i}"));
    let x = c.random("x", dt, [m, h], 2.0);
    let w1 = c.random("w1", dt, [i, h], 2.0);
    let b1 = c.random("b1", dt, [i], 2.0);
    let w2 = c.random("w2", dt, [h, i], 2.0);
    let b2 = c.random("b2", dt, [h], 2.0);
    let g = &mut c.g;
    let y = g.linear(x, w1).unwrap();
    let y = g.add(y, b1).unwrap();
    let y = g.unary(y, UnaryOp::Gelu).unwrap();
    let y = g.linear(y, w2).unwrap();
    let y = g.add(y, b2).unwrap();
    let out = g.add(x, y).unwrap();
    c.finish(out)
}

/// A dense text MLP on `[m, h]` with its residual: swiglu(gate(x), up(x)) (one projection is
/// the epilogue's product, the other its input), down + x (the residual epilogue).
pub fn swiglu_mlp(dt: DType, m: usize, [h, i]: [usize; 2]) -> Built {
    let mut c = Composite::new(&format!("swiglu mlp {dt:?} {m} {h} {i}"));
    let x = c.random("x", dt, [m, h], 1.0);
    let s = 1.0 / (h as f32).sqrt();
    let wg = c.random("gate", dt, [i, h], s);
    let wu = c.random("up", dt, [i, h], s);
    let wd = c.random("down", dt, [h, i], s);
    let g = &mut c.g;
    let gate = g.linear(x, wg).unwrap();
    let up = g.linear(x, wu).unwrap();
    let a = g.swiglu(gate, up).unwrap();
    let y = g.linear(a, wd).unwrap();
    let out = g.add(x, y).unwrap();
    c.finish(out)
}

/// Batched scores `[b, m, d] x [b, n, d]^T`, scaled, then exp: an epilogue with no extra input.
pub fn scaled_scores(dt: DType, [b, m, n, d]: [usize; 4]) -> Built {
    let mut c = Composite::new(&format!("scores {dt:?} {b} {m} {n} {d}"));
    let x = c.random("x", dt, [b, m, d], 1.0);
    let w = c.random("w", dt, [b, n, d], 1.0);
    let y = c.g.matmul(x, w, true).unwrap();
    let y = c.g.scale(y, 0.25).unwrap();
    let out = c.g.unary(y, UnaryOp::Exp).unwrap();
    c.finish(out)
}
