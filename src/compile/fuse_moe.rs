//! MoE fusion: finds the pattern `GraphBuilder::moe` builds (router linear, softmax, top-k,
//! renormalise, every expert's SwiGLU over every token, pick and combine) and replaces it with
//! one `Op::Moe` (`Op::QMoe` over quantized experts), whose cost follows the tokens routed to
//! each expert, when the backend runs it; otherwise the primitives stay. The `ones` / `offsets` tables the composite reads are
//! trusted to be `graph::moe_tables` (the composite checks their shapes).

use super::rewrite::{supported, Replacement, Uses};
use crate::backend::Backend;
use crate::graph::{BinaryOp, DType, Graph, Op};

/// An expert stack: dense (layout, weights) or quantized (format, group, codes, scales).
#[derive(Clone, Copy)]
enum Expert {
    Dense(bool, usize),
    /// Format, group, codes, scales, NVFP4's global scales.
    Quant(crate::quant::QFormat, usize, usize, usize, Option<usize>),
}

struct M<'a> {
    g: &'a Graph,
    inner: Vec<usize>,
}

impl M<'_> {
    fn op(&self, i: usize) -> &Op {
        &self.g.nodes()[i].op
    }
    fn arg(&self, i: usize, j: usize) -> Option<usize> {
        self.g.nodes()[i].inputs.get(j).map(|x| x.0)
    }
    /// Records `i` as part of the pattern and returns its input `j`.
    fn take(&mut self, i: usize, j: usize) -> Option<usize> {
        self.inner.push(i);
        self.arg(i, j)
    }
    /// The expert stack the batched product `i` reads (recorded as part of the pattern).
    fn expert_weight(&mut self, i: usize) -> Option<Expert> {
        let e = match *self.op(i) {
            Op::MatMul { trans_b } => Expert::Dense(trans_b, self.arg(i, 1)?),
            Op::QMatMul { format, group } => {
                Expert::Quant(format, group, self.arg(i, 1)?, self.arg(i, 2)?, self.arg(i, 3))
            }
            _ => return None,
        };
        self.inner.push(i);
        Some(e)
    }
    /// Steps over a cast to `to` when there is one.
    fn skip_cast(&mut self, i: usize, to: DType) -> Option<usize> {
        match self.op(i) {
            Op::Cast(d) if *d == to => self.take(i, 0),
            _ => Some(i),
        }
    }
}

fn find(g: &Graph, o: usize, uses: &Uses) -> Option<Replacement> {
    let nodes = g.nodes();
    let mut m = M { g, inner: Vec::new() };
    let Op::MatMul { trans_b: false } = m.op(o) else { return None };
    let dt = nodes[o].desc.dtype;
    let (w, picked) = (m.arg(o, 0)?, m.arg(o, 1)?);
    // Routing weights: reshape(cast?(div(top, matmul(top, ones)))).
    let Op::Reshape(_) = m.op(w) else { return None };
    let wts = m.take(w, 0)?;
    let wts = m.skip_cast(wts, dt)?;
    let Op::Binary(BinaryOp::Div) = m.op(wts) else { return None };
    let (top, sum) = (m.arg(wts, 0)?, m.take(wts, 1)?);
    let Op::MatMul { trans_b: false } = m.op(sum) else { return None };
    if m.take(sum, 0)? != top {
        return None;
    }
    let Op::TakeAlong = m.op(top) else { return None };
    let (probs, idx) = (m.arg(top, 0)?, m.take(top, 1)?);
    let Op::TopK { k: top_k } = *m.op(idx) else { return None };
    if m.take(idx, 0)? != probs {
        return None;
    }
    let Op::Softmax = m.op(probs) else { return None };
    let lf = m.take(probs, 0)?;
    let logits = m.skip_cast(lf, DType::F32)?;
    let Op::MatMul { trans_b: true } = m.op(logits) else { return None };
    let (x, router) = (m.arg(logits, 0)?, m.take(logits, 1)?);

    // Expert outputs: reshape(gather(reshape(permute(matmul(swiglu(slices of gu), down))), rows)).
    let Op::Reshape(_) = m.op(picked) else { return None };
    let gat = m.take(picked, 0)?;
    let Op::Gather = m.op(gat) else { return None };
    let (yr, rows) = (m.arg(gat, 0)?, m.take(gat, 1)?);
    let Op::Reshape(_) = m.op(yr) else { return None };
    let yp = m.take(yr, 0)?;
    if !matches!(m.op(yp), Op::Permute(p) if p == &[1, 0, 2]) {
        return None;
    }
    let y = m.take(yp, 0)?;
    let (act, down) = (m.arg(y, 0)?, m.expert_weight(y)?);
    let Op::SwiGlu = m.op(act) else { return None };
    let (gate, up) = (m.arg(act, 0)?, m.take(act, 1)?);
    let (Op::Slice { axis: 2, start: 0, len: i1 }, Op::Slice { axis: 2, start, len: i2 }) = (m.op(gate), m.op(up))
    else {
        return None;
    };
    if (i1, start) != (i2, i2) {
        return None;
    }
    let gu = m.take(gate, 0)?;
    if m.take(up, 0)? != gu {
        return None;
    }
    let (x2, gate_up) = (m.arg(gu, 0)?, m.expert_weight(gu)?);
    // Rows: reshape(cast i32(add(cast f32(idx), offsets))).
    let Op::Reshape(_) = m.op(rows) else { return None };
    let ri = m.take(rows, 0)?;
    let Op::Cast(DType::I32) = m.op(ri) else { return None };
    let ra = m.take(ri, 0)?;
    let Op::Binary(BinaryOp::Add) = m.op(ra) else { return None };
    let fidx = m.take(ra, 0)?;
    let Op::Cast(DType::F32) = m.op(fidx) else { return None };
    if m.take(fidx, 0)? != idx || x2 != x {
        return None;
    }
    m.inner.extend([w, picked]);
    m.inner.sort_unstable();
    m.inner.dedup();
    if !uses.private(&m.inner, o) {
        return None;
    }
    let (op, inputs) = match (gate_up, down) {
        (Expert::Dense(t1, gu), Expert::Dense(t2, dn)) if t1 == t2 => {
            (Op::Moe { top_k, trans_b: t1 }, vec![x, router, gu, dn])
        }
        (Expert::Quant(f1, g1, guc, gus, gug), Expert::Quant(f2, g2, dnc, dns, dng)) if (f1, g1) == (f2, g2) => {
            let mut inputs = vec![x, router, guc, gus, dnc, dns];
            inputs.extend(gug.into_iter().chain(dng));
            (Op::QMoe { top_k, format: f1, group: g1 }, inputs)
        }
        _ => return None,
    };
    Some(Replacement { anchor: o, op, inputs, dead: m.inner })
}

/// Every MoE pattern of `graph` that `backend` runs as one op.
pub fn find_all(graph: &Graph, uses: &Uses, backend: &dyn Backend) -> Vec<Replacement> {
    let nodes = graph.nodes();
    (0..nodes.len()).filter_map(|o| find(graph, o, uses)).filter(|r| supported(graph, r, backend)).collect()
}
