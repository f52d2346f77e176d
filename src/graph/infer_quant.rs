//! Shape rules of the quantized-weight ops: `Op::QMatMul` (one weight or a stack of them) and
//! the fused `Op::QMoe`.

use super::{DType, MoeDims, TensorDesc};
use crate::error::{Error, Result};
use crate::quant::QFormat;

/// Sizes of a `QMatMul`: `batch` weights of `[n, k]` (1 for an unstacked weight), each times
/// `m` rows of x; `x_batched` when x holds `batch` blocks of rows rather than one shared block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QMatMulDims {
    /// Weights in the stack (1 when the codes are `[N, K / per_word]`).
    pub batch: usize,
    /// Rows of x each weight multiplies.
    pub m: usize,
    /// Outputs per row.
    pub n: usize,
    /// Inputs per row.
    pub k: usize,
    /// Whether x is `[batch, m, k]` (else every weight reads the same `m` rows).
    pub x_batched: bool,
}

/// Checks the operands of `Op::QMatMul` (x, codes, scales) and returns its sizes.
pub fn qmatmul_dims(format: QFormat, group: usize, inputs: &[&TensorDesc]) -> std::result::Result<QMatMulDims, String> {
    let (x, q, s) = (&inputs[0].shape, inputs[1], inputs[2]);
    if x.rank() == 0 {
        return Err("x must have at least one axis".into());
    }
    let k = x.last();
    format.check(k, group).map_err(|e| e.to_string())?;
    let stacked = q.shape.rank() == 3;
    let (batch, n) = match q.shape.0[..] {
        [n, _] => (1, n),
        [b, n, _] => (b, n),
        _ => (1, 0),
    };
    let lead: &[usize] = if stacked { &[batch] } else { &[] };
    let want = |last: usize| [lead, &[n, last]].concat();
    if q.dtype != DType::U32 || q.shape.0 != want(k / format.per_word()) {
        return Err(format!(
            "codes must be U32 [(B,) N, {}] for x {x} in {}, got {:?} {}",
            k / format.per_word(),
            format.name(),
            q.dtype,
            q.shape
        ));
    }
    let scales = k / group / format.scales_per_word();
    if s.dtype != format.scale_dtype() || s.shape.0 != want(scales) {
        let (dt, shape) = (format.scale_dtype(), want(scales));
        return Err(format!("scales must be {dt:?} {shape:?}, got {:?} {}", s.dtype, s.shape));
    }
    match (format.has_global(), inputs.get(3)) {
        (false, None) => {}
        (true, Some(g)) if g.dtype == DType::F32 && g.shape.0 == [batch] => {}
        (true, g) => {
            let got = g.map_or("none".to_string(), |g| format!("{:?} {}", g.dtype, g.shape));
            return Err(format!("{} needs its F32 global scale [{batch}] as a fourth input, got {got}", format.name()));
        }
        (false, Some(_)) => return Err(format!("{} takes x, codes and scales only", format.name())),
    }
    if !stacked {
        let m = x.0[..x.rank() - 1].iter().product();
        return Ok(QMatMulDims { batch: 1, m, n, k, x_batched: false });
    }
    match x.0[..] {
        [m, _] => Ok(QMatMulDims { batch, m, n, k, x_batched: false }),
        [b, m, _] if b == batch => Ok(QMatMulDims { batch, m, n, k, x_batched: true }),
        _ => Err(format!("a stack of {batch} weights takes x [M, {k}] or [{batch}, M, {k}], got {x}")),
    }
}

/// The output type of `Op::QMatMul`.
pub fn qmatmul(format: QFormat, group: usize, inputs: &[&TensorDesc]) -> std::result::Result<TensorDesc, String> {
    let d = qmatmul_dims(format, group, inputs)?;
    let x = &inputs[0].shape;
    let mut dims = if inputs[1].shape.rank() == 3 { vec![d.batch, d.m, d.n] } else { x.0.clone() };
    if let Some(last) = dims.last_mut() {
        *last = d.n;
    }
    Ok(TensorDesc::new(inputs[0].dtype, dims))
}

/// Checks the operands of `Op::QMoe` and returns its sizes.
pub fn qmoe_dims(top_k: usize, format: QFormat, group: usize, inputs: &[&TensorDesc]) -> Result<MoeDims> {
    let shapes: Vec<String> = inputs.iter().map(|d| format!("{:?} {}", d.dtype, d.shape)).collect();
    let bad = |why: String| {
        Error::shape(
            "qmoe",
            format!(
                "expects x [T, H], router [E, H], gate_up codes U32 [E, 2I, H / {pw}] and scales {sd:?} [E, 2I, H \
                 / {sg}], down codes U32 [E, H, I / {pw}] and scales {sd:?} [E, H, I / {sg}], 1 <= top_k <= E \
                 ({why}); got {}, top_k {top_k}",
                shapes.join(", "),
                pw = format.per_word(),
                sd = format.scale_dtype(),
                sg = group * format.scales_per_word()
            ),
        )
    };
    let (x, r) = (&inputs[0].shape, &inputs[1].shape);
    if x.rank() != 2 || r.rank() != 2 || !inputs[0].dtype.is_float() || !inputs[1].dtype.is_float() {
        return Err(bad("x and router must be 2-d float tensors".into()));
    }
    let (t, h, e) = (x.0[0], x.0[1], r.0[0]);
    if r.0[1] != h {
        return Err(bad("router and x differ in H".into()));
    }
    if inputs[2].shape.rank() != 3 {
        return Err(bad("gate_up codes must be 3-d".into()));
    }
    if top_k == 0 || top_k > e {
        return Err(bad("top_k out of range".into()));
    }
    let i2 = inputs[2].shape.0[1];
    let i = i2 / 2;
    if i == 0 || i2 != 2 * i {
        return Err(bad("gate_up must have 2I > 0 rows".into()));
    }
    let xs = TensorDesc::new(inputs[0].dtype, [t, h]);
    let act = TensorDesc::new(inputs[0].dtype, [e, t, i]);
    let want = if format.has_global() { 8 } else { 6 };
    if inputs.len() != want {
        return Err(bad(format!("{} takes {want} inputs, got {}", format.name(), inputs.len())));
    }
    let mut gu_in = vec![&xs, inputs[2], inputs[3]];
    let mut dn_in = vec![&act, inputs[4], inputs[5]];
    if format.has_global() {
        gu_in.push(inputs[6]);
        dn_in.push(inputs[7]);
    }
    let gu = qmatmul_dims(format, group, &gu_in).map_err(bad)?;
    let dn = qmatmul_dims(format, group, &dn_in).map_err(bad)?;
    if gu.batch != e || dn.batch != e || gu.n != 2 * i || dn.n != h {
        return Err(bad("expert stacks disagree with the router or each other".into()));
    }
    Ok(MoeDims { t, h, e, i, k: top_k })
}

pub(super) fn qmoe(top_k: usize, format: QFormat, group: usize, inputs: &[&TensorDesc]) -> Result<TensorDesc> {
    let d = qmoe_dims(top_k, format, group, inputs)?;
    Ok(TensorDesc::new(inputs[0].dtype, [d.t, d.h]))
}
