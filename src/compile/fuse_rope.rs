//! Rotary fusion: `permute(rope(rms_norm?(x)), [1, 0, 2])` (q/k heads: Qwen3's per-head norm,
//! rotary embedding, heads-first for attention) becomes one `Op::RopeHeads` kernel.

use super::rewrite::{supported, Replacement, Uses};
use crate::backend::Backend;
use crate::graph::{Graph, Op};

fn find(g: &Graph, o: usize, uses: &Uses) -> Option<Replacement> {
    let nodes = g.nodes();
    if !matches!(&nodes[o].op, Op::Permute(p) if p == &[1, 0, 2]) {
        return None;
    }
    let r = nodes[o].inputs[0].0;
    let Op::Rope { style } = nodes[r].op else { return None };
    let (mut x, cos, sin) = (nodes[r].inputs[0].0, nodes[r].inputs[1].0, nodes[r].inputs[2].0);
    let mut dead = vec![r];
    let mut norm = None;
    let mut w = None;
    if let Op::RmsNorm { eps } = nodes[x].op {
        if uses.private(&[x, r], o) {
            dead.push(x);
            norm = Some(eps);
            w = Some(nodes[x].inputs[1].0);
            x = nodes[x].inputs[0].0;
        }
    }
    if !uses.private(&dead, o) {
        return None;
    }
    let mut inputs = vec![x, cos, sin];
    inputs.extend(w);
    Some(Replacement { anchor: o, op: Op::RopeHeads { style, norm }, inputs, dead })
}

/// Every rotary pattern `backend` runs as one kernel.
pub fn find_all(graph: &Graph, uses: &Uses, backend: &dyn Backend) -> Vec<Replacement> {
    let nodes = graph.nodes();
    (0..nodes.len()).filter_map(|o| find(graph, o, uses)).filter(|r| supported(graph, r, backend)).collect()
}
