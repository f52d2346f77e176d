//! What a compiled plan looks like: its kernels in order with their shapes, and a summary
//! (launches per decoder layer and per vision block, peak activation bytes), for
//! `lumen graph` and for tests that pin kernel counts.

use super::Compiled;
use crate::graph::{NodeId, Op};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Whether a node is a kernel launch (not an input, not a free view).
pub fn is_kernel(op: &Op) -> bool {
    !matches!(op, Op::Input { .. }) && !op.is_view()
}

/// Kernel launches per scope (`text.layer.3`, `vision.block.0`, ...; `""` for the top level).
pub fn kernels_by_scope(c: &Compiled) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (i, &l) in c.launched.iter().enumerate() {
        if l {
            *m.entry(c.graph.scope(NodeId(i)).to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Kernel counts of the scopes named `prefix.N`, smallest and largest (None when there are none).
pub fn range_of(by_scope: &BTreeMap<String, usize>, prefix: &str) -> Option<(usize, usize)> {
    let v: Vec<usize> = by_scope
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).is_some_and(|r| r.parse::<usize>().is_ok())
        })
        .map(|(_, &n)| n)
        .collect();
    Some((*v.iter().min()?, *v.iter().max()?))
}

/// The numbers of one compiled plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Kernel launches in all.
    pub kernels: usize,
    /// Launches per decoder layer (fewest, most).
    pub per_layer: Option<(usize, usize)>,
    /// Launches per vision block (fewest, most).
    pub per_block: Option<(usize, usize)>,
    /// Activation bytes of the memory plan.
    pub peak_bytes: usize,
    /// Fused attention, MoE, rotary, add + norm and elementwise ops formed.
    pub fused: [usize; 5],
}

impl Summary {
    /// Summarises `c`.
    pub fn of(c: &Compiled) -> Self {
        let by = kernels_by_scope(c);
        Summary {
            kernels: by.values().sum(),
            per_layer: range_of(&by, "text.layer"),
            per_block: range_of(&by, "vision.block"),
            peak_bytes: c.plan.peak_bytes(),
            fused: [c.fused_attention, c.fused_moe, c.fused_rope, c.fused_norm, c.fused_elementwise],
        }
    }
}

fn range(r: Option<(usize, usize)>) -> String {
    match r {
        None => "-".into(),
        Some((a, b)) if a == b => a.to_string(),
        Some((a, b)) => format!("{a}-{b}"),
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kernel launches | per decoder layer {} | per vision block {} | peak activations {:.2} MiB ({} bytes) | fused {} attention, {} moe, {} rope, {} add+norm, {} elementwise",
            self.kernels,
            range(self.per_layer),
            range(self.per_block),
            self.peak_bytes as f64 / (1 << 20) as f64,
            self.peak_bytes,
            self.fused[0],
            self.fused[1],
            self.fused[2],
            self.fused[3],
            self.fused[4]
        )
    }
}

/// One line per kernel: index, scope, op, input and output types.
pub fn listing(c: &Compiled) -> String {
    let g = &c.graph;
    let mut s = String::new();
    let ty = |id: NodeId| {
        let d = &g.node(id).desc;
        format!("{:?} {}", d.dtype, d.shape).to_lowercase()
    };
    let mut k = 0;
    for (i, n) in g.nodes().iter().enumerate() {
        if !c.launched[i] {
            continue;
        }
        let ins: Vec<String> = n.inputs.iter().map(|x| ty(*x)).collect();
        let side = c.side[i].map(|x| format!(" (+ {})", ty(x))).unwrap_or_default();
        let _ = writeln!(
            s,
            "{k:>5}  {:<16} {:<12} {} -> {}{side}",
            g.scope(NodeId(i)),
            n.op.name(),
            ins.join(", "),
            ty(NodeId(i))
        );
        k += 1;
    }
    s
}
