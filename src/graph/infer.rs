//! Shape and dtype rules: what each op accepts and what it produces. The builder calls this
//! for every node, so a graph that exists is a graph whose shapes fit.

use super::infer_fused::{elementwise, moe};
use super::{DType, Op, Shape, TensorDesc};
use crate::error::{Error, Result};

/// Checks `inputs` against `op` and returns the output's type.
pub fn infer(op: &Op, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let name = op.name();
    let err = |msg: String| Err(Error::shape(name, msg));
    let arity = match op {
        Op::Input { .. } | Op::Random { .. } => 0,
        Op::Concat { .. } => inputs.len().max(1),
        Op::Attention { .. } => inputs.len().clamp(3, 4),
        Op::Moe { .. } => 4,
        Op::QMoe { .. } => inputs.len().clamp(6, 8),
        Op::PagedAttention { .. } => 6,
        Op::RopeHeads { norm, .. } => 3 + norm.is_some() as usize,
        Op::Elementwise { .. } => inputs.len().clamp(1, super::op::MAX_PROGRAM_INPUTS),
        Op::MatMulEpilogue { .. } => inputs.len().clamp(2, 2 + super::op::MAX_EPILOGUE_INPUTS),
        Op::Gather | Op::MatMul { .. } | Op::Binary(_) | Op::RmsNorm { .. } => 2,
        Op::SwiGlu | Op::TakeAlong | Op::WriteRows { .. } => 2,
        Op::LayerNorm { .. } | Op::Rope { .. } | Op::ScatterRows { .. } | Op::AddRmsNorm { .. } => 3,
        Op::QMatMul { .. } => inputs.len().clamp(3, 4),
        _ => 1,
    };
    if inputs.len() != arity {
        return err(format!("takes {arity} inputs, got {}", inputs.len()));
    }
    let float = |i: usize, what: &str| -> Result<()> {
        if inputs[i].dtype.is_float() {
            Ok(())
        } else {
            Err(Error::shape(name, format!("{what} must be a float tensor, got {:?}", inputs[i].dtype)))
        }
    };
    let int = |i: usize, what: &str| -> Result<()> {
        if inputs[i].dtype.is_int() {
            Ok(())
        } else {
            Err(Error::shape(name, format!("{what} must be an integer tensor, got {:?}", inputs[i].dtype)))
        }
    };
    let same = |d: DType, s: &Shape| Ok(TensorDesc::new(d, s.clone()));
    match op {
        Op::Input { .. } => err("inputs are declared with GraphBuilder::input".into()),
        Op::Random { dtype, shape, scale, .. } => {
            // Integer tensors hold the float value truncated toward zero (synthetic FP8 codes).
            if !dtype.is_float() && *dtype != DType::U32 {
                return err(format!("random numbers are float or u32 tensors, not {dtype:?}"));
            }
            if !scale.is_finite() || *scale < 0.0 {
                return err(format!("scale must be finite and non-negative, got {scale}"));
            }
            same(*dtype, shape)
        }
        Op::Gather => {
            float(0, "table")?;
            int(1, "indices")?;
            let t = &inputs[0].shape;
            if t.rank() != 2 {
                return err(format!("table must be [rows, cols], got {t}"));
            }
            let mut dims = inputs[1].shape.0.clone();
            dims.push(t.0[1]);
            same(inputs[0].dtype, &Shape(dims))
        }
        Op::MatMul { trans_b } => matmul(*trans_b, inputs[0], inputs[1]),
        Op::QMatMul { format, group } => {
            float(0, "x")?;
            super::infer_quant::qmatmul(*format, *group, inputs).map_err(|e| Error::shape(name, e))
        }
        Op::Binary(_) => {
            float(0, "a")?;
            float(1, "b")?;
            let s = broadcast(&inputs[0].shape, &inputs[1].shape).ok_or_else(|| {
                Error::shape(name, format!("cannot broadcast {} with {}", inputs[0].shape, inputs[1].shape))
            })?;
            same(inputs[0].dtype, &s)
        }
        Op::Unary(_) | Op::Scale(_) | Op::Softmax => {
            float(0, "x")?;
            same(inputs[0].dtype, &inputs[0].shape)
        }
        Op::RmsNorm { .. } | Op::LayerNorm { .. } => {
            float(0, "x")?;
            let c = inputs[0].shape.last();
            if inputs[0].shape.rank() == 0 {
                return err("x must have at least one axis".into());
            }
            for (i, w) in inputs.iter().enumerate().skip(1) {
                float(i, "weight/bias")?;
                if w.shape.0 != [c] {
                    return err(format!("weight/bias must be [{c}] for x {}, got {}", inputs[0].shape, w.shape));
                }
            }
            same(inputs[0].dtype, &inputs[0].shape)
        }
        Op::SwiGlu => {
            float(0, "gate")?;
            float(1, "up")?;
            if inputs[0].shape != inputs[1].shape {
                return err(format!("gate {} and up {} differ", inputs[0].shape, inputs[1].shape));
            }
            same(inputs[0].dtype, &inputs[0].shape)
        }
        Op::Rope { .. } => rope(inputs),
        Op::Reshape(s) => {
            if s.numel() != inputs[0].shape.numel() {
                return err(format!(
                    "cannot reshape {} ({} elements) to {s}",
                    inputs[0].shape,
                    inputs[0].shape.numel()
                ));
            }
            same(inputs[0].dtype, s)
        }
        Op::Permute(p) => {
            let s = &inputs[0].shape;
            let mut seen = vec![false; s.rank()];
            if p.len() != s.rank() || p.iter().any(|&a| a >= s.rank() || std::mem::replace(&mut seen[a], true)) {
                return err(format!("{p:?} is not a permutation of the axes of {s}"));
            }
            same(inputs[0].dtype, &Shape(p.iter().map(|&a| s.0[a]).collect()))
        }
        Op::Slice { axis, start, len } => {
            let s = &inputs[0].shape;
            if *axis >= s.rank() || start + len > s.0[*axis] || *len == 0 {
                return err(format!("slice axis {axis} [{start}, {}) out of range for {s}", start + len));
            }
            let mut d = s.0.clone();
            d[*axis] = *len;
            same(inputs[0].dtype, &Shape(d))
        }
        Op::Concat { axis } => {
            let first = inputs[0];
            if *axis >= first.shape.rank() {
                return err(format!("axis {axis} out of range for {}", first.shape));
            }
            let mut total = 0;
            for t in inputs {
                let ok = t.dtype == first.dtype
                    && t.shape.rank() == first.shape.rank()
                    && (0..t.shape.rank()).all(|i| i == *axis || t.shape.0[i] == first.shape.0[i]);
                if !ok {
                    return err(format!(
                        "{:?} {} does not fit {:?} {} along axis {axis}",
                        t.dtype, t.shape, first.dtype, first.shape
                    ));
                }
                total += t.shape.0[*axis];
            }
            let mut d = first.shape.0.clone();
            d[*axis] = total;
            same(first.dtype, &Shape(d))
        }
        Op::ScatterRows { .. } => {
            float(0, "base")?;
            int(1, "indices")?;
            float(2, "rows")?;
            let (b, i, r) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
            if b.rank() != 2 || i.rank() != 1 || r.rank() != 2 || r.0[0] != i.0[0] || r.0[1] != b.0[1] {
                return err(format!("expects base [R, C], indices [N], rows [N, C]; got {b}, {i}, {r}"));
            }
            same(inputs[0].dtype, b)
        }
        Op::TopK { k } => {
            float(0, "x")?;
            let s = &inputs[0].shape;
            if s.rank() == 0 || *k == 0 || *k > s.last() {
                return err(format!("k = {k} must be in 1..={} for {s}", s.last()));
            }
            let mut d = s.0.clone();
            *d.last_mut().unwrap() = *k;
            same(DType::I32, &Shape(d))
        }
        Op::ArgMax => {
            float(0, "x")?;
            let s = &inputs[0].shape;
            if s.rank() == 0 || s.last() == 0 {
                return err(format!("needs a non-empty last axis, got {s}"));
            }
            same(DType::I32, &Shape(s.0[..s.rank() - 1].to_vec()))
        }
        Op::TakeAlong => {
            float(0, "x")?;
            int(1, "indices")?;
            let (x, i) = (&inputs[0].shape, &inputs[1].shape);
            if x.rank() == 0 || x.rank() != i.rank() || x.0[..x.rank() - 1] != i.0[..i.rank() - 1] {
                return err(format!("x {x} and indices {i} must agree on all but the last axis"));
            }
            same(inputs[0].dtype, i)
        }
        Op::Cast(to) => same(*to, &inputs[0].shape),
        Op::Attention { tokens_first, .. } => {
            let d = attention(inputs)?;
            let s = &d.shape.0;
            Ok(if *tokens_first { TensorDesc::new(d.dtype, [s[1], s[0], s[2]]) } else { d })
        }
        Op::Moe { top_k, trans_b } => moe(*top_k, *trans_b, inputs),
        Op::QMoe { top_k, format, group } => super::infer_quant::qmoe(*top_k, *format, *group, inputs),
        Op::PagedAttention { block_size, .. } => super::infer_paged::paged_attention(*block_size, inputs),
        Op::WriteRows { rows } => super::infer_paged::write_rows(*rows, inputs),
        Op::Elementwise { code, dtype } => elementwise(code, *dtype, inputs),
        Op::MatMulEpilogue { trans_b, code, dtype } => {
            let product = matmul(*trans_b, inputs[0], inputs[1])?;
            let mut ins: Vec<&TensorDesc> = vec![&product];
            ins.extend(&inputs[2..]);
            let out = elementwise(code, *dtype, &ins)?;
            if out.shape != product.shape {
                return err(format!("epilogue inputs broadcast the product {} to {}", product.shape, out.shape));
            }
            Ok(out)
        }
        Op::RopeHeads { norm, style } => {
            let rope = infer(&Op::Rope { style: *style }, &inputs[..3])?;
            if norm.is_some() && (!inputs[3].dtype.is_float() || inputs[3].shape.0 != [rope.shape.last()]) {
                return err(format!("norm weight must be [D], got {}", inputs[3].shape));
            }
            let s = &rope.shape.0;
            same(rope.dtype, &Shape(vec![s[1], s[0], s[2]]))
        }
        Op::AddRmsNorm { .. } => {
            let (a, b, w) = (inputs[0], inputs[1], inputs[2]);
            if !a.dtype.is_float()
                || a != b
                || !w.dtype.is_float()
                || a.shape.rank() == 0
                || w.shape.0 != [a.shape.last()]
            {
                return err(format!(
                    "expects a and b of one float type and w [C]; got a {:?} {}, b {:?} {}, w {}",
                    a.dtype, a.shape, b.dtype, b.shape, w.shape
                ));
            }
            same(a.dtype, &a.shape)
        }
    }
}

/// Numpy broadcasting of two shapes, or None when they do not fit.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let r = a.rank().max(b.rank());
    let dim = |s: &Shape, i: usize| if i + s.rank() >= r { s.0[i + s.rank() - r] } else { 1 };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(Shape)
}

/// Sizes of a (batched) matmul, as every backend runs it: output batch `i` reads a's batch
/// `i / a_group` and b's batch `i / b_group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulDims {
    /// Output batches.
    pub batch: usize,
    /// Rows of a and of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// Inner size.
    pub k: usize,
    /// Output batches per a batch.
    pub a_group: usize,
    /// Output batches per b batch.
    pub b_group: usize,
    /// Elements between a's batches (0 when a is shared).
    pub a_stride: usize,
    /// Elements between b's batches (0 when b is shared).
    pub b_stride: usize,
}

/// Checks a matmul's operand shapes. The batch (leading) dims of a and b may differ when one
/// batch count divides the other: b with fewer batches serves groups of a's (grouped-query
/// attention), a with fewer batches is shared by groups of b's (one input through many experts).
pub fn matmul_dims(a: &Shape, b: &Shape, trans_b: bool) -> Result<MatmulDims> {
    let err = |m: String| Err(Error::shape("matmul", m));
    if a.rank() < 2 || b.rank() < 2 {
        return err(format!("operands need rank >= 2, got {a} and {b}"));
    }
    let (ar, br) = (a.rank(), b.rank());
    let (m, k) = (a.0[ar - 2], a.0[ar - 1]);
    let (bk, n) = if trans_b { (b.0[br - 1], b.0[br - 2]) } else { (b.0[br - 2], b.0[br - 1]) };
    if k != bk {
        let bs = if trans_b { "[.., N, K]" } else { "[.., K, N]" };
        return err(format!("inner sizes differ: a {a} has K = {k}, b {b} ({bs}) has K = {bk}"));
    }
    let ba: usize = a.0[..ar - 2].iter().product();
    let bb: usize = b.0[..br - 2].iter().product();
    let batch = ba.max(bb);
    if ba == 0 || bb == 0 || !batch.is_multiple_of(ba) || !batch.is_multiple_of(bb) {
        return err(format!("batch counts {ba} (a {a}) and {bb} (b {b}) must divide one another"));
    }
    Ok(MatmulDims {
        batch,
        m,
        n,
        k,
        a_group: batch / ba,
        b_group: batch / bb,
        a_stride: if ba == 1 { 0 } else { m * k },
        b_stride: if bb == 1 { 0 } else { k * n },
    })
}

fn matmul(trans_b: bool, a: &TensorDesc, b: &TensorDesc) -> Result<TensorDesc> {
    if !a.dtype.is_float() || !b.dtype.is_float() {
        return Err(Error::shape("matmul", format!("operands must be float, got {:?} and {:?}", a.dtype, b.dtype)));
    }
    let d = matmul_dims(&a.shape, &b.shape, trans_b)?;
    let (ar, br) = (a.shape.rank(), b.shape.rank());
    // The output takes the batch dims of the operand with more batches (a's on a tie).
    let mut dims = if d.a_group == 1 { a.shape.0[..ar - 2].to_vec() } else { b.shape.0[..br - 2].to_vec() };
    dims.extend([d.m, d.n]);
    Ok(TensorDesc::new(a.dtype, dims))
}

fn attention(inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let (q, k, v) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
    let float = inputs[..3].iter().all(|d| d.dtype.is_float());
    let shapes = q.rank() == 3
        && k.rank() == 3
        && v.rank() == 3
        && k.0[0] > 0
        && q.0[0] % k.0[0] == 0
        && q.0[2] == k.0[2]
        && k.0[0] == v.0[0]
        && k.0[1] == v.0[1];
    let mask_ok = inputs.get(3).is_none_or(|m| m.dtype == DType::F32 && m.shape.0 == [q.0[1], k.0[1]]);
    if !float || !shapes || !mask_ok {
        let mask = inputs.get(3).map(|m| format!(", mask {:?} {}", m.dtype, m.shape)).unwrap_or_default();
        return Err(Error::shape(
            "attention",
            format!("expects q [Hq, T, D], k [Hkv, S, D], v [Hkv, S, Dv], Hkv | Hq, mask f32 [T, S]; got q {q}, k {k}, v {v}{mask}"),
        ));
    }
    Ok(TensorDesc::new(inputs[0].dtype, [q.0[0], q.0[1], v.0[2]]))
}

fn rope(inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let (x, c, s) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
    let ok = inputs[0].dtype.is_float()
        && inputs[1].dtype == DType::F32
        && inputs[2].dtype == DType::F32
        && x.rank() == 3
        && c.rank() == 2
        && c == s
        && c.0[0] == x.0[0]
        && x.0[2] % 2 == 0
        && c.0[1] > 0
        && 2 * c.0[1] <= x.0[2];
    if !ok {
        return Err(Error::shape(
            "rope",
            format!(
                "expects x [T, H, D] (float, D even), cos and sin [T, R/2] (f32) with R <= D; got x {:?} {x}, cos {:?} {c}, sin {:?} {s}",
                inputs[0].dtype, inputs[1].dtype, inputs[2].dtype
            ),
        ));
    }
    Ok(inputs[0].clone())
}
