//! The rewriting shared by the fusion passes: a pass finds patterns, each one an anchor node
//! replaced by a fused op over some earlier nodes plus the intermediates it makes dead; this
//! rebuilds the graph and the map from old node ids to new ones.

use crate::graph::{Graph, GraphBuilder, NodeId, Op};
use crate::{Error, Result};

/// One matched pattern.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// The node whose value the fused op produces (reshaped back to its shape if needed).
    pub anchor: usize,
    /// The fused op.
    pub op: Op,
    /// Its inputs (old node ids, all before the anchor).
    pub inputs: Vec<usize>,
    /// Nodes the fusion makes dead (their value is computed inside the fused op).
    pub dead: Vec<usize>,
}

/// Readers of each node, and whether each node must survive (graph outputs and `keep`).
pub struct Uses {
    /// Nodes reading each node (a node reading twice appears twice).
    pub readers: Vec<Vec<usize>>,
    /// Must survive the run.
    pub kept: Vec<bool>,
    /// Must stay exactly as they are (written by another node's kernel as a side output).
    pub pinned: Vec<bool>,
}

impl Uses {
    /// Computes the uses of `graph`'s nodes.
    pub fn of(graph: &Graph, keep: &[NodeId]) -> Self {
        let n = graph.nodes().len();
        let mut readers = vec![Vec::new(); n];
        for (i, node) in graph.nodes().iter().enumerate() {
            for x in &node.inputs {
                readers[x.0].push(i);
            }
        }
        let mut kept = vec![false; n];
        for id in keep.iter().chain(graph.outputs()) {
            kept[id.0] = true;
        }
        Uses { readers, kept, pinned: vec![false; n] }
    }

    /// True when every node of `inner` is read only by nodes of `inner` or by `anchor`, and
    /// none must survive: fusing them away loses nothing anyone can see.
    pub fn private(&self, inner: &[usize], anchor: usize) -> bool {
        inner.iter().all(|&i| !self.kept[i] && self.readers[i].iter().all(|r| *r == anchor || inner.contains(r)))
    }
}

/// Whether `backend` runs `r`'s fused op and it computes the anchor's value (same dtype and
/// element count: a reshape restores the shape).
pub fn supported(graph: &Graph, r: &Replacement, backend: &dyn crate::backend::Backend) -> bool {
    let nodes = graph.nodes();
    let ins: Vec<&crate::graph::TensorDesc> = r.inputs.iter().map(|&i| &nodes[i].desc).collect();
    let anchor = &nodes[r.anchor].desc;
    crate::graph::infer(&r.op, &ins).is_ok_and(|d| d.dtype == anchor.dtype && d.shape.numel() == anchor.shape.numel())
        && backend.supports(&r.op, &ins)
}

/// The rewritten graph and, for every old node, its new id (None when fused away).
pub struct Rewritten {
    /// The graph to run.
    pub graph: Graph,
    /// Old node index -> new node.
    pub map: Vec<Option<NodeId>>,
}

/// Applies non-overlapping replacements to `graph`.
pub fn apply(graph: &Graph, reps: &[Replacement]) -> Result<Rewritten> {
    let nodes = graph.nodes();
    let n = nodes.len();
    let mut dead = vec![false; n];
    let mut at: Vec<Option<&Replacement>> = vec![None; n];
    for r in reps {
        for &d in &r.dead {
            dead[d] = true;
        }
        at[r.anchor] = Some(r);
    }
    let mut b = GraphBuilder::new();
    let mut map: Vec<Option<NodeId>> = vec![None; n];
    let get = |map: &[Option<NodeId>], i: usize| map[i].ok_or_else(|| Error::Graph(format!("fusion lost node {i}")));
    for (i, node) in nodes.iter().enumerate() {
        if dead[i] && at[i].is_none() {
            continue;
        }
        b.set_scope(graph.scope(NodeId(i)));
        map[i] = Some(match (&node.op, at[i]) {
            (Op::Input { name }, _) => b.input(name, node.desc.clone())?,
            (_, Some(r)) => {
                let ins = r.inputs.iter().map(|&x| get(&map, x)).collect::<Result<Vec<_>>>()?;
                let id = b.push(r.op.clone(), &ins)?;
                if b.desc(id).shape == node.desc.shape {
                    id
                } else {
                    b.reshape(id, node.desc.shape.clone())?
                }
            }
            (op, None) => {
                let ins = node.inputs.iter().map(|x| get(&map, x.0)).collect::<Result<Vec<_>>>()?;
                b.push(op.clone(), &ins)?
            }
        });
        if let Some(id) = map[i] {
            if b.desc(id) != &node.desc {
                return Err(Error::Graph(format!("fusion changed the type of node {i} ({})", node.op.name())));
            }
        }
    }
    for o in graph.outputs() {
        b.output(get(&map, o.0)?)?;
    }
    Ok(Rewritten { graph: b.build(), map })
}
