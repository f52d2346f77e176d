//! Attention fusion: finds the pattern `GraphBuilder::attention` builds (q.k^T matmul, scale,
//! optional additive mask, softmax, p.v matmul) and replaces it with one `Op::Attention`, when
//! the backend implements that op for these shapes; otherwise the primitives stay (lowering).
//! Intermediates are fused away only when nothing else reads them and they need not survive.

use crate::backend::Backend;
use crate::graph::{BinaryOp, Graph, GraphBuilder, NodeId, Op, TensorDesc};
use crate::Result;

/// The rewritten graph and, for every old node, its new id (None when fused away).
pub struct Fused {
    /// The graph to run.
    pub graph: Graph,
    /// Old node index -> new node.
    pub map: Vec<Option<NodeId>>,
    /// How many attention patterns were fused.
    pub fused: usize,
}

struct Match {
    q: usize,
    k: usize,
    v: usize,
    mask: Option<usize>,
    scale: f32,
    dead: Vec<usize>,
}

fn find(g: &Graph, o: usize, readers: &[usize], keep: &[bool]) -> Option<Match> {
    let nodes = g.nodes();
    let only = |i: usize| readers[i] == 1 && !keep[i];
    let Op::MatMul { trans_b: false } = nodes[o].op else { return None };
    let (p, v) = (nodes[o].inputs[0].0, nodes[o].inputs[1].0);
    if !matches!(nodes[p].op, Op::Softmax) || !only(p) {
        return None;
    }
    let mut x = nodes[p].inputs[0].0;
    let mut mask = None;
    let mut dead = vec![p];
    if let Op::Binary(BinaryOp::Add) = nodes[x].op {
        if !only(x) {
            return None;
        }
        dead.push(x);
        mask = Some(nodes[x].inputs[1].0);
        x = nodes[x].inputs[0].0;
    }
    let Op::Scale(scale) = nodes[x].op else { return None };
    if !only(x) {
        return None;
    }
    dead.push(x);
    let s = nodes[x].inputs[0].0;
    let Op::MatMul { trans_b: true } = nodes[s].op else { return None };
    if !only(s) {
        return None;
    }
    dead.push(s);
    let (q, k) = (nodes[s].inputs[0].0, nodes[s].inputs[1].0);
    Some(Match { q, k, v, mask, scale, dead })
}

/// Fuses every attention pattern `backend` can run as one op; `keep` must survive unchanged.
pub fn run(graph: &Graph, keep: &[NodeId], backend: &dyn Backend) -> Result<Fused> {
    let nodes = graph.nodes();
    let n = nodes.len();
    let mut readers = vec![0usize; n];
    for node in nodes {
        for i in &node.inputs {
            readers[i.0] += 1;
        }
    }
    let mut kept = vec![false; n];
    for id in keep.iter().chain(graph.outputs()) {
        kept[id.0] = true;
    }
    let mut dead = vec![false; n];
    let mut fused_at: Vec<Option<Match>> = (0..n).map(|_| None).collect();
    let mut count = 0;
    for (o, slot) in fused_at.iter_mut().enumerate() {
        let Some(m) = find(graph, o, &readers, &kept) else { continue };
        let mut inputs: Vec<&TensorDesc> = vec![&nodes[m.q].desc, &nodes[m.k].desc, &nodes[m.v].desc];
        inputs.extend(m.mask.map(|i| &nodes[i].desc));
        let op = Op::Attention { scale: m.scale, causal: false };
        // Only shapes the fused op accepts (the mask exactly [T, S], f32) and the backend runs.
        if crate::graph::infer(&op, &inputs).is_err() || !backend.supports(&op, &inputs) {
            continue;
        }
        for d in &m.dead {
            dead[*d] = true;
        }
        *slot = Some(m);
        count += 1;
    }
    let mut b = GraphBuilder::new();
    let mut map: Vec<Option<NodeId>> = vec![None; n];
    let get =
        |map: &[Option<NodeId>], i: usize| map[i].ok_or_else(|| crate::Error::Graph(format!("fusion lost node {i}")));
    for (i, node) in nodes.iter().enumerate() {
        if dead[i] {
            continue;
        }
        map[i] = Some(match (&node.op, &fused_at[i]) {
            (Op::Input { name }, _) => b.input(name, node.desc.clone())?,
            (_, Some(m)) => {
                let mut ins = vec![get(&map, m.q)?, get(&map, m.k)?, get(&map, m.v)?];
                if let Some(mk) = m.mask {
                    ins.push(get(&map, mk)?);
                }
                b.push(Op::Attention { scale: m.scale, causal: false }, &ins)?
            }
            (op, None) => {
                let ins = node.inputs.iter().map(|x| get(&map, x.0)).collect::<Result<Vec<_>>>()?;
                b.push(op.clone(), &ins)?
            }
        });
    }
    for o in graph.outputs() {
        b.output(get(&map, o.0)?)?;
    }
    Ok(Fused { graph: b.build(), map, fused: count })
}
