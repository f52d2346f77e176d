//! Re-typing a compiled graph instead of compiling again: a decode step differs from the
//! previous one only in the length of its KV inputs, so its compiled form is the previous one's
//! with those inputs' types changed and every type after them inferred again. Fused ops are
//! checked with the backend again (a capability can depend on sizes) and the memory plan is
//! redone; where anything no longer holds the caller compiles from scratch.

use super::{memory, Compiled, Options};
use crate::backend::Backend;
use crate::graph::{Graph, GraphBuilder, NodeId, Op, TensorDesc};
use crate::Result;

/// Whether the compiler formed `op` by fusion (so a backend may refuse it at other sizes).
fn is_fused(op: &Op) -> bool {
    matches!(
        op,
        Op::Attention { .. }
            | Op::Moe { .. }
            | Op::QMoe { .. }
            | Op::RopeHeads { .. }
            | Op::AddRmsNorm { .. }
            | Op::Elementwise { .. }
            | Op::MatMulEpilogue { .. }
    )
}

/// `c` with the inputs named in `inputs` (compiled node, new type) retyped; None when a node
/// no longer type-checks or the backend refuses a fused op at the new sizes.
pub fn reshape(c: &Compiled, inputs: &[(NodeId, TensorDesc)], backend: &dyn Backend) -> Option<Compiled> {
    let g = &c.graph;
    let mut new_desc: Vec<Option<&TensorDesc>> = vec![None; g.nodes().len()];
    for (id, d) in inputs {
        if !matches!(g.nodes().get(id.0)?.op, Op::Input { .. }) {
            return None;
        }
        new_desc[id.0] = Some(d);
    }
    let mut b = GraphBuilder::new();
    for (i, node) in g.nodes().iter().enumerate() {
        b.set_scope(g.scope(NodeId(i)));
        let id = match &node.op {
            Op::Input { name } => b.input(name, new_desc[i].unwrap_or(&node.desc).clone()).ok()?,
            op => {
                if is_fused(op) {
                    let descs: Vec<&TensorDesc> = node.inputs.iter().map(|x| b.desc(*x)).collect();
                    if !backend.supports(op, &descs) {
                        return None;
                    }
                }
                b.push(op.clone(), &node.inputs).ok()?
            }
        };
        debug_assert_eq!(id.0, i);
    }
    for o in g.outputs() {
        b.output(*o).ok()?;
    }
    let graph = b.build();
    let keep: Vec<NodeId> = (0..graph.nodes().len()).filter(|&i| c.plan.kept[i]).map(NodeId).collect();
    let plan = memory::plan(&graph, &keep);
    Some(Compiled {
        graph,
        map: c.map.clone(),
        plan,
        fused_attention: c.fused_attention,
        fused_moe: c.fused_moe,
        fused_elementwise: c.fused_elementwise,
        fused_norm: c.fused_norm,
        fused_rope: c.fused_rope,
        side: c.side.clone(),
        launched: c.launched.clone(),
    })
}

/// The last graph compiled for a step that repeats (a batched decode step) and its compiled
/// form: a next graph of the same structure (the same ops over the same inputs, the same
/// outputs and kept nodes; input types may differ) is retyped instead of compiled.
#[derive(Default)]
pub struct StepCache {
    last: Option<(Graph, Vec<NodeId>, Options, Compiled)>,
    /// Graphs retyped rather than compiled (for tests and logs).
    pub hits: usize,
}

impl StepCache {
    /// `graph` compiled for `backend`, retyped from the last one where the structure allows.
    pub fn compile(
        &mut self,
        graph: &Graph,
        keep: &[NodeId],
        backend: &dyn Backend,
        opts: Options,
    ) -> Result<Compiled> {
        if let Some((g, k, o, c)) = &self.last {
            if k == keep && *o == opts && same_structure(g, graph) {
                let changed: Option<Vec<(NodeId, TensorDesc)>> = (g.nodes().iter().zip(graph.nodes()).enumerate())
                    .filter(|(_, (a, b))| matches!(a.op, Op::Input { .. }) && a.desc != b.desc)
                    .map(|(i, (_, b))| c.map[i].map(|id| (id, b.desc.clone())))
                    .collect();
                if let Some(r) = changed.and_then(|inputs| reshape(c, &inputs, backend)) {
                    self.hits += 1;
                    self.last = Some((graph.clone(), keep.to_vec(), opts, r.clone()));
                    return Ok(r);
                }
            }
        }
        let c = super::compile(graph, keep, backend, opts)?;
        self.last = Some((graph.clone(), keep.to_vec(), opts, c.clone()));
        Ok(c)
    }
}

/// The same ops over the same inputs in the same order, with the same outputs (types aside).
fn same_structure(a: &Graph, b: &Graph) -> bool {
    a.nodes().len() == b.nodes().len()
        && a.outputs() == b.outputs()
        && a.nodes().iter().zip(b.nodes()).all(|(x, y)| x.op == y.op && x.inputs == y.inputs)
}
