//! `GraphBuilder`: adds nodes, checking each one's shapes; composite helpers (attention) are
//! built from primitives here so every backend sees the same graph.

use super::{infer, BinaryOp, Graph, Node, NodeId, Op, RopeStyle, Shape, TensorDesc, UnaryOp};
use crate::error::{Error, Result};

/// Builds a [`Graph`]; every method checks its inputs and returns a typed error on misuse.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    g: Graph,
    scope: u32,
}

impl GraphBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The type of a node already added.
    pub fn desc(&self, id: NodeId) -> &TensorDesc {
        &self.g.nodes[id.0].desc
    }

    /// Nodes added from now on belong to scope `name` (a model part such as
    /// `text.layers.3`; `""` is the top level). Reports group kernels by scope.
    pub fn set_scope(&mut self, name: &str) {
        if self.g.scopes.is_empty() {
            self.g.scopes.push(String::new());
        }
        if self.g.scopes[self.scope as usize] == name {
            return; // consecutive nodes mostly share a scope
        }
        self.scope = match self.g.scopes.iter().position(|s| s == name) {
            Some(i) => i as u32,
            None => {
                self.g.scopes.push(name.to_string());
                (self.g.scopes.len() - 1) as u32
            }
        };
    }

    /// Declares a named input (activation or weight).
    pub fn input(&mut self, name: &str, desc: TensorDesc) -> Result<NodeId> {
        if self.g.input(name).is_some() {
            return Err(Error::Graph(format!("input `{name}` declared twice")));
        }
        self.g.nodes.push(Node { op: Op::Input { name: name.into() }, inputs: vec![], desc, scope: self.scope });
        let id = NodeId(self.g.nodes.len() - 1);
        self.g.input_ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// Adds `op` over `inputs`, checking shapes.
    pub fn push(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        if let Some(bad) = inputs.iter().find(|i| i.0 >= self.g.nodes.len()) {
            return Err(Error::Graph(format!("{}: unknown node {}", op.name(), bad.0)));
        }
        let descs: Vec<&TensorDesc> = inputs.iter().map(|i| &self.g.nodes[i.0].desc).collect();
        let desc = infer(&op, &descs)?;
        self.g.nodes.push(Node { op, inputs: inputs.to_vec(), desc, scope: self.scope });
        Ok(NodeId(self.g.nodes.len() - 1))
    }

    /// Marks a node as a graph output.
    pub fn output(&mut self, id: NodeId) -> Result<()> {
        if id.0 >= self.g.nodes.len() {
            return Err(Error::Graph(format!("unknown node {}", id.0)));
        }
        self.g.outputs.push(id);
        Ok(())
    }

    /// Finishes the graph.
    pub fn build(self) -> Graph {
        self.g
    }

    /// A copy of the graph built so far (the builder stays usable).
    pub fn clone_graph(&self) -> Graph {
        self.g.clone()
    }

    /// Embedding lookup / row gather.
    pub fn gather(&mut self, table: NodeId, idx: NodeId) -> Result<NodeId> {
        self.push(Op::Gather, &[table, idx])
    }
    /// `x @ w^T` with w stored `[out, in]`.
    pub fn linear(&mut self, x: NodeId, w: NodeId) -> Result<NodeId> {
        self.push(Op::MatMul { trans_b: true }, &[x, w])
    }
    /// `x @ w^T` with w quantized (codes and scales, see [`crate::quant`]).
    pub fn qlinear(
        &mut self,
        x: NodeId,
        codes: NodeId,
        scales: NodeId,
        format: crate::quant::QFormat,
        group: usize,
    ) -> Result<NodeId> {
        self.push(Op::QMatMul { format, group }, &[x, codes, scales])
    }
    /// `x @ w^T` with `w` a quantized weight or stack (NVFP4's global scales included).
    pub fn qmatmul(&mut self, x: NodeId, w: &super::QWeight) -> Result<NodeId> {
        let mut inputs = vec![x];
        inputs.extend(w.inputs());
        self.push(Op::QMatMul { format: w.format, group: w.group }, &inputs)
    }
    /// General (batched) matmul.
    pub fn matmul(&mut self, a: NodeId, b: NodeId, trans_b: bool) -> Result<NodeId> {
        self.push(Op::MatMul { trans_b }, &[a, b])
    }
    /// Broadcasting a + b.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(Op::Binary(BinaryOp::Add), &[a, b])
    }
    /// Broadcasting a * b.
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(Op::Binary(BinaryOp::Mul), &[a, b])
    }
    /// x * factor.
    pub fn scale(&mut self, x: NodeId, factor: f32) -> Result<NodeId> {
        self.push(Op::Scale(factor), &[x])
    }
    /// Elementwise unary op.
    pub fn unary(&mut self, x: NodeId, op: UnaryOp) -> Result<NodeId> {
        self.push(Op::Unary(op), &[x])
    }
    /// RMSNorm over the last axis.
    pub fn rms_norm(&mut self, x: NodeId, w: NodeId, eps: f32) -> Result<NodeId> {
        self.push(Op::RmsNorm { eps }, &[x, w])
    }
    /// LayerNorm over the last axis.
    pub fn layer_norm(&mut self, x: NodeId, w: NodeId, b: NodeId, eps: f32) -> Result<NodeId> {
        self.push(Op::LayerNorm { eps }, &[x, w, b])
    }
    /// silu(gate) * up.
    pub fn swiglu(&mut self, gate: NodeId, up: NodeId) -> Result<NodeId> {
        self.push(Op::SwiGlu, &[gate, up])
    }
    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: NodeId) -> Result<NodeId> {
        self.push(Op::Softmax, &[x])
    }
    /// Rotary embedding with cos/sin tables from [`super::rope::RopeTable`].
    pub fn rope(&mut self, x: NodeId, cos: NodeId, sin: NodeId, style: RopeStyle) -> Result<NodeId> {
        self.push(Op::Rope { style }, &[x, cos, sin])
    }
    /// New shape, same data.
    pub fn reshape(&mut self, x: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        self.push(Op::Reshape(shape.into()), &[x])
    }
    /// Axis permutation.
    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        self.push(Op::Permute(perm.to_vec()), &[x])
    }
    /// Slice along one axis.
    pub fn slice(&mut self, x: NodeId, axis: usize, start: usize, len: usize) -> Result<NodeId> {
        self.push(Op::Slice { axis, start, len }, &[x])
    }
    /// Concatenation along one axis.
    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        self.push(Op::Concat { axis }, xs)
    }

    /// Scaled dot-product attention built from primitives: q `[Hq, T, D]`, k and v
    /// `[Hkv, S, D]` with Hkv dividing Hq (grouped-query heads: q head h reads kv head
    /// `h / (Hq / Hkv)`), an optional additive mask broadcastable to `[Hq, T, S]` (causal
    /// masks and block-diagonal masks for packed images are both just masks). Returns
    /// `[Hq, T, D]`. The compiler's attention fusion recognises exactly this pattern.
    pub fn attention(&mut self, q: NodeId, k: NodeId, v: NodeId, mask: Option<NodeId>, scale: f32) -> Result<NodeId> {
        let (qs, ks, vs) = (self.desc(q).shape.clone(), self.desc(k).shape.clone(), self.desc(v).shape.clone());
        if qs.rank() != 3 || ks.rank() != 3 || ks != vs || qs.0[2] != ks.0[2] || ks.0[0] == 0 || qs.0[0] % ks.0[0] != 0
        {
            return Err(Error::shape(
                "attention",
                format!("expects q [Hq, T, D], k = v [Hkv, S, D], Hkv | Hq; got q {qs}, k {ks}, v {vs}"),
            ));
        }
        let scores = self.matmul(q, k, true)?;
        let mut scores = self.scale(scores, scale)?;
        if let Some(m) = mask {
            scores = self.add(scores, m)?;
        }
        let p = self.softmax(scores)?;
        self.matmul(p, v, false)
    }
}
