//! The fused MoE op, plainly: per token, route (softmax over the logits, top-k, renormalise),
//! then only the chosen experts' SwiGLU MLPs, combined by the routing weights.
//! Intermediate products are rounded to x's dtype exactly where `Op::Moe` says.

use super::math::matmul;
use crate::graph::{DType, MoeDims, Shape};
use crate::tensor::round_to;
use crate::Result;
use std::borrow::Cow;

/// Routing of one token: the chosen experts (best first, ties to the lower index) and their
/// renormalised weights, rounded to `dtype`.
pub fn route(logits: &[f32], k: usize, dtype: DType) -> Vec<(usize, f32)> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let p: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let z: f32 = p.iter().sum();
    let p: Vec<f32> = p.iter().map(|v| v / z).collect();
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let sum: f32 = order[..k].iter().map(|&e| p[e]).sum();
    order[..k].iter().map(|&e| (e, round_to(dtype, p[e] / sum))).collect()
}

/// One expert's gate_up and down weights as f32, in the layout `trans_b` says.
pub type Pair<'a> = (Cow<'a, [f32]>, Cow<'a, [f32]>);

/// An expert's weights by its index.
pub type ExpertWeights<'a> = dyn Fn(usize) -> Result<Pair<'a>> + 'a;

/// Dense expert stacks gate_up and down as f32.
pub fn dense_experts<'a>(gu: &'a [f32], dn: &'a [f32], d: MoeDims) -> Box<ExpertWeights<'a>> {
    let (gn, dnn) = (d.h * 2 * d.i, d.i * d.h);
    Box::new(move |ex| Ok((Cow::Borrowed(&gu[ex * gn..(ex + 1) * gn]), Cow::Borrowed(&dn[ex * dnn..(ex + 1) * dnn]))))
}

/// Inputs x and router as f32, each hit expert's weights from `experts`; output `[T, H]`
/// before the final rounding. Pairs are grouped by expert and each expert's rows go through
/// its two matmuls once.
pub fn moe(
    x: &[f32],
    router: &[f32],
    experts: &ExpertWeights,
    d: MoeDims,
    trans_b: bool,
    dtype: DType,
) -> Result<Vec<f32>> {
    let MoeDims { t, h, e, i, k } = d;
    let r = |v: f32| round_to(dtype, v);
    let logits = matmul(x, &Shape(vec![t, h]), router, &Shape(vec![e, h]), true)?;
    let routes: Vec<Vec<(usize, f32)>> = (0..t)
        .map(|tok| route(&logits[tok * e..(tok + 1) * e].iter().map(|&v| r(v)).collect::<Vec<_>>(), k, dtype))
        .collect();
    // y of pair (token, slot), computed expert by expert.
    let mut y = vec![0f32; t * k * h];
    let (gu_shape, dn_shape) =
        if trans_b { (Shape(vec![2 * i, h]), Shape(vec![h, i])) } else { (Shape(vec![h, 2 * i]), Shape(vec![i, h])) };
    for ex in 0..e {
        let pairs: Vec<usize> = (0..t * k).filter(|&p| routes[p / k][p % k].0 == ex).collect();
        if pairs.is_empty() {
            continue;
        }
        let (gu, dn) = experts(ex)?;
        let n = pairs.len();
        let rows: Vec<f32> = pairs.iter().flat_map(|&p| x[(p / k) * h..(p / k + 1) * h].iter().copied()).collect();
        let g = matmul(&rows, &Shape(vec![n, h]), &gu, &gu_shape, trans_b)?;
        let act: Vec<f32> = (0..n * i)
            .map(|j| {
                let (row, c) = (j / i, j % i);
                let (gate, up) = (r(g[row * 2 * i + c]), r(g[row * 2 * i + i + c]));
                r(gate / (1.0 + (-gate).exp()) * up)
            })
            .collect();
        let out = matmul(&act, &Shape(vec![n, i]), &dn, &dn_shape, trans_b)?;
        for (row, &p) in pairs.iter().enumerate() {
            y[p * h..(p + 1) * h].copy_from_slice(&out[row * h..(row + 1) * h]);
        }
    }
    let mut out = vec![0f32; t * h];
    for tok in 0..t {
        for (slot, &(_, w)) in routes[tok].iter().enumerate() {
            let p = tok * k + slot;
            for (o, &v) in out[tok * h..(tok + 1) * h].iter_mut().zip(&y[p * h..(p + 1) * h]) {
                *o += w * r(v);
            }
        }
    }
    Ok(out)
}
