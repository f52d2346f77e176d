//! Residual add + RMSNorm fusion: `n = rms_norm(a + b, w)` becomes one `Op::AddRmsNorm`
//! kernel. When the sum is read elsewhere too (the residual stream), the fused kernel writes it
//! as a side output and the add launches no kernel of its own; the sum must then be read only
//! after the norm, which holds for the pre-norm layers models build.

use super::rewrite::{Replacement, Uses};
use crate::backend::Backend;
use crate::graph::{BinaryOp, Graph, Op, TensorDesc};

/// A fusion, and the add node (old id) whose value the fused kernel writes as its side output.
pub struct Found {
    /// The rewrite.
    pub rep: Replacement,
    /// The add that survives as a side output (None when it is fused away).
    pub side: Option<usize>,
}

/// Every add + RMSNorm pair `backend` runs as one kernel.
pub fn find_all(graph: &Graph, uses: &Uses, backend: &dyn Backend) -> Vec<Found> {
    let nodes = graph.nodes();
    let mut out = Vec::new();
    for (j, node) in nodes.iter().enumerate() {
        let Op::RmsNorm { eps } = node.op else { continue };
        let (i, w) = (node.inputs[0].0, node.inputs[1].0);
        let Op::Binary(BinaryOp::Add) = nodes[i].op else { continue };
        let (a, b) = (nodes[i].inputs[0].0, nodes[i].inputs[1].0);
        let op = Op::AddRmsNorm { eps };
        let ins: Vec<&TensorDesc> = [a, b, w].iter().map(|&x| &nodes[x].desc).collect();
        if crate::graph::infer(&op, &ins).ok().as_ref() != Some(&node.desc) || !backend.supports(&op, &ins) {
            continue;
        }
        let others: Vec<usize> = uses.readers[i].iter().copied().filter(|&r| r != j).collect();
        let private = others.is_empty() && !uses.kept[i] && uses.readers[i].len() == 1;
        if !private && others.iter().any(|&r| r < j) {
            continue; // the sum is read before the norm runs: keep the add
        }
        let dead = if private { vec![i] } else { vec![] };
        let side = (!private).then_some(i);
        out.push(Found { rep: Replacement { anchor: j, op, inputs: vec![a, b, w], dead }, side });
    }
    out
}
