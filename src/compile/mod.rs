//! The graph compiler, one file per pass: attention fusion and MoE fusion (each consulting
//! what the backend implements: a fused op the backend lacks is never formed, so its
//! primitives run instead), then the liveness-based memory plan. `compile` runs them in order.

pub mod fuse_attention;
pub mod fuse_elementwise;
pub mod fuse_moe;
pub mod fuse_norm;
pub mod fuse_rope;
pub mod memory;
pub mod report;
mod reshape;
pub mod rewrite;

pub use reshape::{reshape, StepCache};

use crate::backend::Backend;
use crate::graph::{Graph, NodeId};
use crate::Result;
use memory::MemoryPlan;

/// Which passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Fuse attention and MoE patterns (off: the graph runs as built).
    pub fuse: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { fuse: true }
    }
}

/// A graph ready to run on one backend.
#[derive(Clone)]
pub struct Compiled {
    /// The graph after fusion.
    pub graph: Graph,
    /// Node of the caller's graph -> node of the compiled graph (None when fused away).
    pub map: Vec<Option<NodeId>>,
    /// Where every tensor lives.
    pub plan: MemoryPlan,
    /// Attention patterns fused.
    pub fused_attention: usize,
    /// MoE patterns fused.
    pub fused_moe: usize,
    /// Elementwise chains fused.
    pub fused_elementwise: usize,
    /// Add + RMSNorm pairs fused.
    pub fused_norm: usize,
    /// Rotary embeddings fused with their q/k norm and head transpose.
    pub fused_rope: usize,
    /// For each compiled node: the node whose value its kernel also writes (side output).
    pub side: Vec<Option<NodeId>>,
    /// For each compiled node: whether it is launched (not an input, a view, or a value
    /// another kernel writes as its side output).
    pub launched: Vec<bool>,
}

/// Compiles `graph` for `backend`; the nodes in `keep` (and the outputs) survive each run.
pub fn compile(graph: &Graph, keep: &[NodeId], backend: &dyn Backend, opts: Options) -> Result<Compiled> {
    let identity = |g: &Graph| (0..g.nodes().len()).map(|i| Some(NodeId(i))).collect::<Vec<_>>();
    let (mut graph, mut map) = (graph.clone(), identity(graph));
    let (mut fused_attention, mut fused_moe, mut fused_elementwise, mut fused_norm) = (0, 0, 0, 0);
    let mut fused_rope = 0;
    let mut sides: Vec<(NodeId, NodeId)> = Vec::new();
    if opts.fuse {
        // Big patterns first (they contain elementwise ops of their own), then elementwise
        // chains over what is left.
        let uses = rewrite::Uses::of(&graph, keep);
        let att = fuse_attention::find_all(&graph, &uses, backend);
        let moe = fuse_moe::find_all(&graph, &uses, backend);
        let rope = fuse_rope::find_all(&graph, &uses, backend);
        (fused_attention, fused_moe, fused_rope) = (att.len(), moe.len(), rope.len());
        let all: Vec<_> = att.into_iter().chain(moe).chain(rope).collect();
        let r = rewrite::apply(&graph, &all)?;
        (graph, map) = (r.graph, r.map);
        // Residual add + norm pairs, then elementwise chains (never swallowing a sum that a
        // fused norm writes as its side output).
        let uses = rewrite::Uses::of(&graph, &translate(&map, keep));
        let found = fuse_norm::find_all(&graph, &uses, backend);
        fused_norm = found.len();
        let reps: Vec<_> = found.iter().map(|f| f.rep.clone()).collect();
        let r = rewrite::apply(&graph, &reps)?;
        for f in &found {
            if let (Some(s), Some(j)) = (f.side, r.map[f.rep.anchor]) {
                let i = r.map[s].ok_or_else(|| crate::Error::Graph("fusion lost a side output".into()))?;
                sides.push((j, i));
            }
        }
        map = compose(&map, &r.map);
        graph = r.graph;

        let mut uses = rewrite::Uses::of(&graph, &translate(&map, keep));
        for (_, i) in &sides {
            uses.pinned[i.0] = true;
        }
        let ew = fuse_elementwise::find_all(&graph, &uses, backend);
        fused_elementwise = ew.len();
        let r = rewrite::apply(&graph, &ew)?;
        for (j, i) in sides.iter_mut() {
            let moved = (r.map[j.0], r.map[i.0]);
            let (Some(nj), Some(ni)) = moved else {
                return Err(crate::Error::Graph("elementwise fusion lost a side output".into()));
            };
            (*j, *i) = (nj, ni);
        }
        map = compose(&map, &r.map);
        graph = r.graph;
    }
    let n = graph.nodes().len();
    let mut side = vec![None; n];
    let mut launched: Vec<bool> = graph.nodes().iter().map(|node| report::is_kernel(&node.op)).collect();
    for (j, i) in &sides {
        side[j.0] = Some(*i);
        launched[i.0] = false;
    }
    let plan = memory::plan(&graph, &translate(&map, keep));
    Ok(Compiled {
        graph,
        map,
        plan,
        fused_attention,
        fused_moe,
        fused_elementwise,
        fused_norm,
        fused_rope,
        side,
        launched,
    })
}

fn compose(first: &[Option<NodeId>], then: &[Option<NodeId>]) -> Vec<Option<NodeId>> {
    first.iter().map(|m| m.and_then(|id| then[id.0])).collect()
}

fn translate(map: &[Option<NodeId>], ids: &[NodeId]) -> Vec<NodeId> {
    ids.iter().filter_map(|k| map.get(k.0).copied().flatten()).collect()
}
