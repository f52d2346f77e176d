//! The graph compiler, one file per pass: attention fusion and MoE fusion (each consulting
//! what the backend implements: a fused op the backend lacks is never formed, so its
//! primitives run instead), then the liveness-based memory plan. `compile` runs them in order.

pub mod fuse_attention;
pub mod fuse_elementwise;
pub mod fuse_moe;
pub mod memory;
pub mod report;
pub mod rewrite;

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
}

/// Compiles `graph` for `backend`; the nodes in `keep` (and the outputs) survive each run.
pub fn compile(graph: &Graph, keep: &[NodeId], backend: &dyn Backend, opts: Options) -> Result<Compiled> {
    let identity = |g: &Graph| (0..g.nodes().len()).map(|i| Some(NodeId(i))).collect::<Vec<_>>();
    let (mut graph, mut map) = (graph.clone(), identity(graph));
    let (mut fused_attention, mut fused_moe, mut fused_elementwise) = (0, 0, 0);
    if opts.fuse {
        // Big patterns first (they contain elementwise ops of their own), then elementwise
        // chains over what is left.
        let uses = rewrite::Uses::of(&graph, keep);
        let att = fuse_attention::find_all(&graph, &uses, backend);
        let moe = fuse_moe::find_all(&graph, &uses, backend);
        (fused_attention, fused_moe) = (att.len(), moe.len());
        let all: Vec<_> = att.into_iter().chain(moe).collect();
        let r = rewrite::apply(&graph, &all)?;
        (graph, map) = (r.graph, r.map);
        let kept = translate(&map, keep);
        let uses = rewrite::Uses::of(&graph, &kept);
        let ew = fuse_elementwise::find_all(&graph, &uses, backend);
        fused_elementwise = ew.len();
        let r = rewrite::apply(&graph, &ew)?;
        map = map.iter().map(|m| m.and_then(|id| r.map[id.0])).collect();
        graph = r.graph;
    }
    let plan = memory::plan(&graph, &translate(&map, keep));
    Ok(Compiled { graph, map, plan, fused_attention, fused_moe, fused_elementwise })
}

fn translate(map: &[Option<NodeId>], ids: &[NodeId]) -> Vec<NodeId> {
    ids.iter().filter_map(|k| map.get(k.0).copied().flatten()).collect()
}
