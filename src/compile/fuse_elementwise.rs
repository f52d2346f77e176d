//! Elementwise fusion: a tree of elementwise ops (unary, binary with broadcasting, scale,
//! SwiGLU, float casts) whose inner results nothing else reads becomes one `Op::Elementwise`
//! program, so the chain reads its inputs once and writes one tensor. When one leaf of the
//! tree is a matmul of the tree's shape that nothing else reads (a projection followed by its
//! bias, activation or residual add), the program becomes that matmul's epilogue
//! (`Op::MatMulEpilogue`) and the product is never stored. Inner results stored in 16 bits in
//! the graph as built are rounded the same way inside the program.

use super::rewrite::{Replacement, Uses};
use crate::backend::Backend;
use crate::graph::{
    DType, Graph, Inst, Op, TensorDesc, MAX_EPILOGUE_INPUTS, MAX_PROGRAM, MAX_PROGRAM_INPUTS, MAX_STACK,
};

/// Placeholder slot of the matmul product while a region is emitted.
const ACC: u8 = u8::MAX;

fn elementwise(g: &Graph, i: usize) -> bool {
    let n = &g.nodes()[i];
    match n.op {
        Op::Unary(_) | Op::Scale(_) | Op::Binary(_) | Op::SwiGlu => n.desc.dtype.is_float(),
        Op::Cast(to) => to.is_float() && n.inputs.iter().all(|x| g.node(*x).desc.dtype.is_float()),
        _ => false,
    }
}

struct Region<'a> {
    g: &'a Graph,
    uses: &'a Uses,
    taken: &'a [bool],
    root: usize,
    code: Vec<Inst>,
    leaves: Vec<usize>,
    inner: Vec<usize>,
    depth: usize,
    max_depth: usize,
    /// Whether a matmul leaf may become the accumulator, and the one that did.
    allow_acc: bool,
    acc: Option<usize>,
}

impl Region<'_> {
    /// Node `x` is free to disappear into this region: `reader` is its only reader, and it
    /// is in no other region, need not survive, and is nobody's side output.
    fn private_to(&self, x: usize, reader: usize) -> bool {
        !self.taken[x] && !self.uses.kept[x] && !self.uses.pinned[x] && self.uses.readers[x] == [reader]
    }

    fn inlinable(&self, x: usize, reader: usize) -> bool {
        elementwise(self.g, x) && self.private_to(x, reader)
    }

    /// A matmul read only by `reader`, whose product has the region's shape.
    fn absorbable(&self, x: usize, reader: usize) -> bool {
        let n = &self.g.nodes()[x];
        self.allow_acc
            && self.acc.is_none()
            && matches!(n.op, Op::MatMul { .. })
            && self.private_to(x, reader)
            && n.desc.shape == self.g.nodes()[self.root].desc.shape
    }

    fn push(&mut self, inst: Inst, pops: usize) {
        self.code.push(inst);
        self.depth = self.depth + 1 - pops;
        self.max_depth = self.max_depth.max(self.depth);
    }

    fn load(&mut self, x: usize) {
        let slot = match self.leaves.iter().position(|&l| l == x) {
            Some(s) => s,
            None => {
                self.leaves.push(x);
                self.leaves.len() - 1
            }
        };
        self.push(Inst::Load(slot as u8), 0);
    }

    /// Emits the code computing node `i` (inlining inputs only it reads).
    fn emit(&mut self, i: usize) {
        let node = &self.g.nodes()[i];
        for x in &node.inputs {
            if self.inlinable(x.0, i) {
                self.inner.push(x.0);
                self.emit(x.0);
            } else if self.absorbable(x.0, i) {
                self.acc = Some(x.0);
                self.push(Inst::Load(ACC), 0);
                let dt = self.g.nodes()[x.0].desc.dtype;
                if matches!(dt, DType::BF16 | DType::F16) {
                    self.push(Inst::Round(dt), 1);
                }
            } else {
                self.load(x.0);
            }
        }
        match node.op {
            Op::Unary(u) => self.push(Inst::Unary(u), 1),
            Op::Scale(f) => self.push(Inst::Scale(f), 1),
            Op::Binary(b) => self.push(Inst::Binary(b), 2),
            Op::SwiGlu => self.push(Inst::SwiGlu, 2),
            _ => {} // a float cast is the rounding below
        }
        let dt = node.desc.dtype;
        if i != self.root && matches!(dt, DType::BF16 | DType::F16) {
            self.push(Inst::Round(dt), 1);
        }
    }
}

/// The fused op of the tree rooted at `root` (with a matmul accumulator when `allow_acc` and
/// one fits), its inputs and the nodes it absorbs; None when nothing would be saved or it is
/// too big for one program.
fn region(
    g: &Graph,
    uses: &Uses,
    taken: &[bool],
    root: usize,
    allow_acc: bool,
) -> Option<(Op, Vec<usize>, Vec<usize>)> {
    let mut r = Region {
        g,
        uses,
        taken,
        root,
        code: vec![],
        leaves: vec![],
        inner: vec![],
        depth: 0,
        max_depth: 0,
        allow_acc,
        acc: None,
    };
    r.emit(root);
    let limit = if r.acc.is_some() { MAX_EPILOGUE_INPUTS } else { MAX_PROGRAM_INPUTS };
    if (r.inner.is_empty() && r.acc.is_none())
        || r.leaves.len() > limit
        || r.code.len() > MAX_PROGRAM
        || r.max_depth > MAX_STACK
    {
        return None;
    }
    let dtype = g.nodes()[root].desc.dtype;
    let Some(mm) = r.acc else {
        return Some((Op::Elementwise { code: r.code, dtype }, r.leaves, r.inner));
    };
    let Op::MatMul { trans_b } = g.nodes()[mm].op else { return None };
    let code = r
        .code
        .iter()
        .map(|inst| match *inst {
            Inst::Load(ACC) => Inst::Load(0),
            Inst::Load(j) => Inst::Load(j + 1),
            other => other,
        })
        .collect();
    let mut inputs: Vec<usize> = g.nodes()[mm].inputs.iter().map(|x| x.0).collect();
    inputs.extend(&r.leaves);
    let mut dead = r.inner;
    dead.push(mm);
    Some((Op::MatMulEpilogue { trans_b, code, dtype }, inputs, dead))
}

/// Every maximal elementwise tree of `graph` (at least two ops, or one after a matmul) that
/// `backend` runs fused.
pub fn find_all(graph: &Graph, uses: &Uses, backend: &dyn Backend) -> Vec<Replacement> {
    let nodes = graph.nodes();
    let mut taken = vec![false; nodes.len()];
    let mut out = Vec::new();
    for root in (0..nodes.len()).rev() {
        if taken[root] || uses.pinned[root] || !elementwise(graph, root) {
            continue;
        }
        // With a matmul accumulator if one fits and the backend runs it, else plain.
        let found = [true, false].into_iter().find_map(|acc| {
            let (op, inputs, dead) = region(graph, uses, &taken, root, acc)?;
            let ins: Vec<&TensorDesc> = inputs.iter().map(|&i| &nodes[i].desc).collect();
            let fits = crate::graph::infer(&op, &ins).is_ok_and(|d| d == nodes[root].desc);
            (fits && backend.supports(&op, &ins)).then_some((op, inputs, dead))
        });
        let Some((op, inputs, dead)) = found else { continue };
        for &i in dead.iter().chain([&root]) {
            taken[i] = true;
        }
        out.push(Replacement { anchor: root, op, inputs, dead });
    }
    out
}
