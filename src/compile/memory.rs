//! Liveness-based memory plan: every computed tensor gets a slot (one device buffer), and a slot
//! is reused once all readers of its previous tensor have run. Launches execute in graph order
//! on one queue, so a reused buffer is never read after it is overwritten. Kept tensors (graph
//! outputs and tensors nothing reads) keep their slot to the end of the run.

use crate::graph::{Graph, NodeId, Op};

/// Where each tensor of a graph lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// For each node: the node whose buffer it uses (itself, or for views the viewed root).
    pub root: Vec<usize>,
    /// For each computed root node, its slot.
    pub slot: Vec<Option<usize>>,
    /// Bytes of each slot (the largest tensor it holds).
    pub slot_bytes: Vec<usize>,
    /// Whether each node's value survives the run (readable afterwards).
    pub kept: Vec<bool>,
}

impl MemoryPlan {
    /// Bytes of all slots: the activation memory one run needs.
    pub fn peak_bytes(&self) -> usize {
        self.slot_bytes.iter().sum()
    }
}

/// Plans `graph`; the nodes in `keep` (besides the graph's outputs and every sink) survive.
pub fn plan(graph: &Graph, keep: &[NodeId]) -> MemoryPlan {
    let nodes = graph.nodes();
    let n = nodes.len();
    let mut root = Vec::with_capacity(n);
    for (i, node) in nodes.iter().enumerate() {
        root.push(if node.op.is_view() { root[node.inputs[0].0] } else { i });
    }
    let mut last_use = vec![0usize; n];
    let mut has_reader = vec![false; n];
    for (i, node) in nodes.iter().enumerate() {
        last_use[root[i]] = last_use[root[i]].max(i);
        for inp in &node.inputs {
            last_use[root[inp.0]] = last_use[root[inp.0]].max(i);
            has_reader[inp.0] = true;
        }
    }
    let mut kept = vec![false; n];
    for id in graph.outputs().iter().chain(keep) {
        kept[id.0] = true;
    }
    for i in 0..n {
        kept[i] |= !has_reader[i];
    }
    for i in 0..n {
        if kept[i] {
            last_use[root[i]] = usize::MAX;
        }
    }
    let mut slot = vec![None; n];
    let mut slot_bytes: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    // Slots to release once the node at that index has run, keyed by node index.
    let mut release: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate() {
        if !node.op.is_view() && !matches!(node.op, Op::Input { .. }) {
            let bytes = node.desc.bytes().max(4);
            // Best fit among free slots; else grow the largest free one; else a new slot.
            let pick = free
                .iter()
                .enumerate()
                .filter(|(_, &s)| slot_bytes[s] >= bytes)
                .min_by_key(|(_, &s)| slot_bytes[s])
                .map(|(j, _)| j)
                .or_else(|| (0..free.len()).max_by_key(|&j| slot_bytes[free[j]]));
            let s = match pick {
                Some(j) => free.swap_remove(j),
                None => {
                    slot_bytes.push(0);
                    slot_bytes.len() - 1
                }
            };
            slot_bytes[s] = slot_bytes[s].max(bytes);
            slot[i] = Some(s);
            if last_use[i] != usize::MAX {
                release[last_use[i]].push(s);
            }
        }
        free.append(&mut release[i]);
    }
    MemoryPlan { root, slot, slot_bytes, kept }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DType, GraphBuilder, TensorDesc};

    #[test]
    fn a_chain_reuses_two_slots_and_keeps_its_outputs() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", TensorDesc::new(DType::F32, [64])).unwrap();
        let mut h = x;
        let mut mids = Vec::new();
        for _ in 0..10 {
            h = g.scale(h, 2.0).unwrap();
            mids.push(h);
        }
        let side = g.scale(mids[2], 3.0).unwrap();
        let graph = g.build();
        let p = plan(&graph, &[mids[4]]);
        // Ten 256-byte tensors in a chain plus a kept sink and a kept mid: far fewer slots.
        assert!(p.slot_bytes.len() <= 5, "{:?}", p.slot_bytes);
        assert!(p.kept[h.0] && p.kept[side.0] && p.kept[mids[4].0] && !p.kept[mids[5].0]);
        let (s4, s_last) = (p.slot[mids[4].0], p.slot[h.0]);
        for m in &mids[5..] {
            assert_ne!(p.slot[m.0], s4, "a kept tensor's slot is never reused");
        }
        assert_ne!(s_last, p.slot[mids[8].0], "an op never writes over its own input");
        // mids[2] is read by mids[3] and by `side` (node 12): its slot stays busy until then.
        for m in &mids[3..] {
            assert_ne!(p.slot[m.0], p.slot[mids[2].0]);
        }
    }
}
