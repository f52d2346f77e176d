//! Attention fusion: finds the pattern `GraphBuilder::attention` builds (q.k^T matmul, scale,
//! optional additive mask, softmax, p.v matmul) and replaces it with one `Op::Attention`, when
//! the backend implements that op for these shapes; otherwise the primitives stay (lowering).
//! Intermediates are fused away only when nothing else reads them and they need not survive;
//! a `[1, 0, 2]` transpose right after (to tokens-first, for the output projection) is
//! absorbed too.

use super::rewrite::{supported, Replacement, Uses};
use crate::backend::Backend;
use crate::graph::{BinaryOp, Graph, Op};

fn find(g: &Graph, o: usize, uses: &Uses) -> Option<Replacement> {
    let nodes = g.nodes();
    let Op::MatMul { trans_b: false } = nodes[o].op else { return None };
    let (p, v) = (nodes[o].inputs[0].0, nodes[o].inputs[1].0);
    if !matches!(nodes[p].op, Op::Softmax) {
        return None;
    }
    let mut x = nodes[p].inputs[0].0;
    let mut mask = None;
    let mut dead = vec![p];
    if let Op::Binary(BinaryOp::Add) = nodes[x].op {
        dead.push(x);
        mask = Some(nodes[x].inputs[1].0);
        x = nodes[x].inputs[0].0;
    }
    let Op::Scale(scale) = nodes[x].op else { return None };
    dead.push(x);
    let s = nodes[x].inputs[0].0;
    let Op::MatMul { trans_b: true } = nodes[s].op else { return None };
    dead.push(s);
    if !uses.private(&dead, o) {
        return None;
    }
    let (q, k) = (nodes[s].inputs[0].0, nodes[s].inputs[1].0);
    let mut inputs = vec![q, k, v];
    inputs.extend(mask);
    // A tokens-first transpose that only this attention feeds is written directly.
    let mut anchor = o;
    let mut tokens_first = false;
    if let [r] = uses.readers[o][..] {
        if matches!(&nodes[r].op, Op::Permute(p) if p == &[1, 0, 2]) && !uses.kept[o] {
            dead.push(o);
            anchor = r;
            tokens_first = true;
        }
    }
    Some(Replacement { anchor, op: Op::Attention { scale, causal: false, tokens_first }, inputs, dead })
}

/// Every attention pattern of `graph` that `backend` runs as one op.
pub fn find_all(graph: &Graph, uses: &Uses, backend: &dyn Backend) -> Vec<Replacement> {
    let nodes = graph.nodes();
    (0..nodes.len()).filter_map(|o| find(graph, o, uses)).filter(|r| supported(graph, r, backend)).collect()
}
