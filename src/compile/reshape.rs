//! Re-typing a compiled graph instead of compiling again: a decode step differs from the
//! previous one only in the length of its KV inputs, so its compiled form is the previous one's
//! with those inputs' types changed and every type after them inferred again. Fused ops are
//! checked with the backend again (a capability can depend on sizes) and the memory plan is
//! redone; where anything no longer holds the caller compiles from scratch.

use super::{memory, Compiled};
use crate::backend::Backend;
use crate::graph::{GraphBuilder, NodeId, Op, TensorDesc};

/// Whether the compiler formed `op` by fusion (so a backend may refuse it at other sizes).
fn is_fused(op: &Op) -> bool {
    matches!(
        op,
        Op::Attention { .. }
            | Op::Moe { .. }
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
