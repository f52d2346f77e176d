//! Reference math for the compute ops, on f32 slices.

use crate::graph::{matmul_dims, BinaryOp, Inst, RopeStyle, Shape, UnaryOp};
use crate::{Error, Result};

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn unary(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Silu => silu(x),
        UnaryOp::Gelu => {
            let x = x as f64;
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            (0.5 * x * (1.0 + u.tanh())) as f32
        }
        UnaryOp::GeluErf => {
            let x = x as f64;
            (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
        }
        UnaryOp::Exp => x.exp(),
        UnaryOp::Neg => -x,
    }
}

fn index(v: f32, len: usize, what: &str) -> Result<usize> {
    if v < 0.0 || v as usize >= len || v.fract() != 0.0 {
        return Err(Error::Data(format!("{what}: index {v} out of range 0..{len}")));
    }
    Ok(v as usize)
}

pub fn gather(table: &[f32], cols: usize, idx: &[f32]) -> Result<Vec<f32>> {
    let rows = table.len() / cols.max(1);
    let mut out = Vec::with_capacity(idx.len() * cols);
    for &i in idx {
        let r = index(i, rows, "gather")?;
        out.extend_from_slice(&table[r * cols..(r + 1) * cols]);
    }
    Ok(out)
}

pub fn matmul(a: &[f32], sa: &Shape, b: &[f32], sb: &Shape, trans_b: bool) -> Result<Vec<f32>> {
    let d = matmul_dims(sa, sb, trans_b)?;
    let (rsb, csb) = if trans_b { (1, d.k as isize) } else { (d.n as isize, 1) };
    let mut c = vec![0f32; d.batch * d.m * d.n];
    for i in 0..d.batch {
        let (ao, bo) = ((i / d.a_group) * d.a_stride, (i / d.b_group) * d.b_stride);
        // SAFETY: a[ao..] holds m*k elements, b[bo..] k*n and c[i*m*n..] m*n for this batch
        // (matmul_dims checked the shapes), and the strides describe exactly those extents.
        unsafe {
            matrixmultiply::sgemm(
                d.m,
                d.k,
                d.n,
                1.0,
                a[ao..].as_ptr(),
                d.k as isize,
                1,
                b[bo..].as_ptr(),
                rsb,
                csb,
                0.0,
                c[i * d.m * d.n..].as_mut_ptr(),
                d.n as isize,
                1,
            );
        }
    }
    Ok(c)
}

pub fn binary(op: BinaryOp, a: &[f32], sa: &Shape, b: &[f32], sb: &Shape, so: &Shape) -> Vec<f32> {
    let ia = broadcast_index(sa, so);
    let ib = broadcast_index(sb, so);
    (0..so.numel()).map(|i| apply_binary(op, a[ia(i)], b[ib(i)])).collect()
}

fn apply_binary(op: BinaryOp, x: f32, y: f32) -> f32 {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
    }
}

/// Runs an elementwise program over whole tensors: each instruction maps the stack's top
/// vectors (inputs broadcast to `so` when loaded).
pub fn elementwise(code: &[Inst], x: &[Vec<f32>], shapes: &[&Shape], so: &Shape) -> Vec<f32> {
    let n = so.numel();
    let mut st: Vec<Vec<f32>> = Vec::with_capacity(8);
    for inst in code {
        match *inst {
            Inst::Load(j) => {
                let (src, idx) = (&x[j as usize], broadcast_index(shapes[j as usize], so));
                st.push((0..n).map(|i| src[idx(i)]).collect());
            }
            Inst::Binary(_) | Inst::SwiGlu if st.len() < 2 => return vec![f32::NAN; n],
            Inst::Binary(op) => {
                let b = st.pop().unwrap_or_default();
                if let Some(a) = st.last_mut() {
                    a.iter_mut().zip(&b).for_each(|(a, &b)| *a = apply_binary(op, *a, b));
                }
            }
            Inst::SwiGlu => {
                let u = st.pop().unwrap_or_default();
                if let Some(g) = st.last_mut() {
                    g.iter_mut().zip(&u).for_each(|(g, &u)| *g = silu(*g) * u);
                }
            }
            _ => {
                let Some(top) = st.last_mut() else { return vec![f32::NAN; n] };
                match *inst {
                    Inst::Unary(op) => top.iter_mut().for_each(|v| *v = unary(op, *v)),
                    Inst::Scale(f) => top.iter_mut().for_each(|v| *v *= f),
                    Inst::Round(d) => top.iter_mut().for_each(|v| *v = crate::tensor::round_to(d, *v)),
                    _ => {}
                }
            }
        }
    }
    st.pop().unwrap_or_else(|| vec![f32::NAN; n])
}

/// Maps a flat index of `out` to the flat index of a broadcast operand of shape `s`.
fn broadcast_index(s: &Shape, out: &Shape) -> impl Fn(usize) -> usize {
    let dims = out.0.clone();
    let strides = s.broadcast_strides(out);
    move |mut i| {
        let mut r = 0;
        for d in (0..dims.len()).rev() {
            r += (i % dims[d]) * strides[d];
            i /= dims[d];
        }
        r
    }
}

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let c = w.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / c as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        out.extend(row.iter().zip(w).map(|(&v, &g)| ((v as f64 * inv) as f32) * g));
    }
    out
}

pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let c = w.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        out.extend((0..c).map(|j| (((row[j] as f64 - mean) * inv) as f32) * w[j] + b[j]));
    }
    out
}

pub fn softmax(x: &[f32], c: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = row.iter().map(|&v| ((v - max) as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / sum) as f32));
    }
    out
}

pub fn rope(x: &[f32], s: &Shape, cos: &[f32], sin: &[f32], style: RopeStyle) -> Vec<f32> {
    let (t, h, d) = (s.0[0], s.0[1], s.0[2]);
    let half = cos.len() / t.max(1);
    let mut out = x.to_vec();
    for ti in 0..t {
        for hi in 0..h {
            let base = (ti * h + hi) * d;
            for p in 0..half {
                let (i, j) = match style {
                    RopeStyle::Half => (p, p + half),
                    RopeStyle::Interleaved => (2 * p, 2 * p + 1),
                };
                let (c, sn) = (cos[ti * half + p], sin[ti * half + p]);
                let (xi, xj) = (x[base + i], x[base + j]);
                out[base + i] = xi * c - xj * sn;
                out[base + j] = xj * c + xi * sn;
            }
        }
    }
    out
}

pub fn scatter_rows(base: &[f32], cols: usize, idx: &[f32], rows: &[f32], acc: bool) -> Result<Vec<f32>> {
    let n_rows = base.len() / cols.max(1);
    let mut out = base.to_vec();
    let mut seen = vec![false; n_rows];
    for (n, &i) in idx.iter().enumerate() {
        let r = index(i, n_rows, "scatter_rows")?;
        if std::mem::replace(&mut seen[r], true) {
            return Err(Error::Data(format!("scatter_rows: row {r} given twice; indices must be distinct")));
        }
        for c in 0..cols {
            let v = rows[n * cols + c];
            out[r * cols + c] = if acc { out[r * cols + c] + v } else { v };
        }
    }
    Ok(out)
}

/// Indices of the k largest per row, largest first, ties to the lower index.
pub fn top_k(x: &[f32], c: usize, k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / c * k);
    for row in x.chunks(c) {
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        out.extend(order[..k].iter().map(|&i| i as f32));
    }
    out
}

pub fn take_along(x: &[f32], c: usize, idx: &[f32], k: usize) -> Result<Vec<f32>> {
    idx.iter().enumerate().map(|(i, &j)| Ok(x[(i / k) * c + index(j, c, "take_along")?])).collect()
}

/// Attention, plainly: per head, scores q.k^T by matmul, scale, mask, causal cut, softmax
/// (in f64), then the weighted sum of values by matmul.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[f32]>,
    dims: [usize; 6],
    scale: f32,
    causal: bool,
) -> Result<Vec<f32>> {
    let [hq, t, s, d, dv, hkv] = dims;
    let mut out = Vec::with_capacity(hq * t * dv);
    for h in 0..hq {
        let g = h / (hq / hkv);
        let qh = &q[h * t * d..(h + 1) * t * d];
        let kg = &k[g * s * d..(g + 1) * s * d];
        let scores = matmul(qh, &Shape(vec![t, d]), kg, &Shape(vec![s, d]), true)?;
        let mut p = vec![0f32; t * s];
        for i in 0..t {
            let row: Vec<f64> = (0..s)
                .map(|j| {
                    let hidden = causal && j > i + s - t;
                    let m = mask.map_or(0.0, |m| m[i * s + j] as f64);
                    if hidden {
                        f64::NEG_INFINITY
                    } else {
                        scores[i * s + j] as f64 * scale as f64 + m
                    }
                })
                .collect();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for j in 0..s {
                p[i * s + j] = (e[j] / sum) as f32;
            }
        }
        out.extend(matmul(&p, &Shape(vec![t, s]), &v[g * s * dv..(g + 1) * s * dv], &Shape(vec![s, dv]), false)?);
    }
    Ok(out)
}

/// `Op::PagedAttention` (see its doc): each token on its own, scores and outputs in f32
/// (keys in order: cached, then new), the softmax in f64, so a token's result does not depend
/// on what else is in the batch.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(x: &[Vec<f32>], p: crate::graph::PagedDims, scale: f32, block_size: usize) -> Result<Vec<f32>> {
    use crate::graph::PAGED_META;
    let (q, kn, vn, kp, vp, ix) = (&x[0], &x[1], &x[2], &x[3], &x[4], &x[5]);
    let (hkv, d, dv) = (p.hkv, p.d, p.dv);
    let cols = PAGED_META + p.max_blocks;
    let bad = |m: String| Err(Error::Data(format!("paged_attention: {m}")));
    let mut out = vec![0f32; p.t * p.hq * dv];
    for t in 0..p.t {
        let row = &ix[t * cols..(t + 1) * cols];
        let (past, start) = (row[0] as usize, row[1] as usize);
        if start > t || past > p.max_blocks * block_size {
            return bad(format!("token {t}: start {start} / past {past} out of range"));
        }
        // (pool or new, row) of every key this token sees.
        let mut keys: Vec<(bool, usize)> = Vec::with_capacity(past + t - start + 1);
        for j in 0..past {
            let block = row[PAGED_META + j / block_size] as usize;
            let slot = block * block_size + j % block_size;
            if slot >= p.slots {
                return bad(format!("token {t}: block {block} is outside the pool"));
            }
            keys.push((true, slot));
        }
        keys.extend((start..=t).map(|r| (false, r)));
        for h in 0..p.hq {
            let g = h / (p.hq / hkv);
            let qv = &q[(t * p.hq + h) * d..][..d];
            let kv = |&(pool, r): &(bool, usize)| {
                if pool {
                    &kp[(r * hkv + g) * d..][..d]
                } else {
                    &kn[(r * hkv + g) * d..][..d]
                }
            };
            let scores: Vec<f64> = keys
                .iter()
                .map(|k| kv(k).iter().zip(qv).fold(0f32, |a, (x, y)| a + x * y) as f64 * scale as f64)
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let o = &mut out[(t * p.hq + h) * dv..][..dv];
            for (&(pool, r), w) in keys.iter().zip(&e) {
                let w = (w / sum) as f32;
                let v = if pool { &vp[(r * hkv + g) * dv..][..dv] } else { &vn[(r * hkv + g) * dv..][..dv] };
                for (o, v) in o.iter_mut().zip(v) {
                    *o += w * v;
                }
            }
        }
    }
    Ok(out)
}
