//! The fused MoE op, plainly: per token, route (softmax in f64 over f32 logits, top-k,
//! renormalise), then only the chosen experts' SwiGLU MLPs, combined by the routing weights.
//! Intermediate products are rounded to x's dtype exactly where `Op::Moe` says.

use crate::graph::{DType, MoeDims};
use crate::tensor::round_to;

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

fn dot(a: &[f32], b: impl Iterator<Item = f32>) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Inputs x, router, gate_up, down as f32; output `[T, H]` before the final rounding.
pub fn moe(x: &[f32], router: &[f32], gu: &[f32], dn: &[f32], d: MoeDims, trans_b: bool, dtype: DType) -> Vec<f32> {
    let MoeDims { t, h, e, i, k } = d;
    let r = |v: f32| round_to(dtype, v);
    let mut out = vec![0f32; t * h];
    let mut act = vec![0f32; i];
    for tok in 0..t {
        let xt = &x[tok * h..(tok + 1) * h];
        let logits: Vec<f32> = (0..e).map(|j| r(dot(xt, router[j * h..(j + 1) * h].iter().copied()))).collect();
        for (ex, w) in route(&logits, k, dtype) {
            let g = &gu[ex * h * 2 * i..(ex + 1) * h * 2 * i];
            // Column c of this expert's [H -> 2I] map.
            let col = |c: usize| -> f32 {
                if trans_b {
                    dot(xt, g[c * h..(c + 1) * h].iter().copied())
                } else {
                    dot(xt, (0..h).map(|hh| g[hh * 2 * i + c]))
                }
            };
            for (c, a) in act.iter_mut().enumerate() {
                let (gate, up) = (r(col(c)), r(col(i + c)));
                *a = r(gate / (1.0 + (-gate).exp()) * up);
            }
            let w2 = &dn[ex * i * h..(ex + 1) * i * h];
            for (c, o) in out[tok * h..(tok + 1) * h].iter_mut().enumerate() {
                let y = if trans_b {
                    dot(&act, w2[c * i..(c + 1) * i].iter().copied())
                } else {
                    dot(&act, (0..i).map(|ii| w2[ii * h + c]))
                };
                *o += w * r(y);
            }
        }
    }
    out
}
