//! Elementwise fusion: a tree of elementwise ops (unary, binary with broadcasting, scale,
//! SwiGLU, float casts) whose inner results nothing else reads becomes one `Op::Elementwise`
//! program, so the chain reads its inputs once and writes one tensor. Inner results stored in
//! 16 bits in the graph as built are rounded the same way inside the program.

use super::rewrite::{Replacement, Uses};
use crate::backend::Backend;
use crate::graph::{DType, Graph, Inst, Op, TensorDesc, MAX_PROGRAM, MAX_PROGRAM_INPUTS, MAX_STACK};

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
}

impl Region<'_> {
    fn inlinable(&self, x: usize, reader: usize) -> bool {
        elementwise(self.g, x)
            && !self.taken[x]
            && !self.uses.kept[x]
            && !self.uses.pinned[x]
            && self.uses.readers[x].len() == 1
            && self.uses.readers[x][0] == reader
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

/// Every maximal elementwise tree of `graph` (at least two ops) that `backend` runs fused.
pub fn find_all(graph: &Graph, uses: &Uses, backend: &dyn Backend) -> Vec<Replacement> {
    let nodes = graph.nodes();
    let mut taken = vec![false; nodes.len()];
    let mut out = Vec::new();
    for root in (0..nodes.len()).rev() {
        if taken[root] || uses.pinned[root] || !elementwise(graph, root) {
            continue;
        }
        let mut r = Region {
            g: graph,
            uses,
            taken: &taken,
            root,
            code: vec![],
            leaves: vec![],
            inner: vec![],
            depth: 0,
            max_depth: 0,
        };
        r.emit(root);
        if r.inner.is_empty()
            || r.leaves.len() > MAX_PROGRAM_INPUTS
            || r.code.len() > MAX_PROGRAM
            || r.max_depth > MAX_STACK
        {
            continue;
        }
        let op = Op::Elementwise { code: r.code, dtype: nodes[root].desc.dtype };
        let ins: Vec<&TensorDesc> = r.leaves.iter().map(|&i| &nodes[i].desc).collect();
        let fits = crate::graph::infer(&op, &ins).is_ok_and(|d| d == nodes[root].desc);
        if !fits || !backend.supports(&op, &ins) {
            continue;
        }
        let (inner, leaves) = (r.inner, r.leaves);
        for &i in inner.iter().chain([&root]) {
            taken[i] = true;
        }
        out.push(Replacement { anchor: root, op, inputs: leaves, dead: inner });
    }
    out
}
