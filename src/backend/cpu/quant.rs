//! `Op::QMatMul` on the oracle: the codes read as raw words (never through f32), the weight
//! dequantized plainly, then the ordinary matmul.

use super::math;
use super::State;
use crate::backend::{BufferId, Kernel};
use crate::graph::Shape;
use crate::quant::{QFormat, Quantized};
use crate::tensor::{decode, encode};
use crate::Result;

pub(super) fn qmatmul(
    k: &Kernel,
    s: &mut State,
    inputs: &[BufferId],
    output: BufferId,
    format: QFormat,
    group: usize,
) -> Result<()> {
    let (dx, dq, ds) = (&k.inputs[0], &k.inputs[1], &k.inputs[2]);
    let (n, kk) = (dq.shape.0[0], dx.shape.last());
    let x = decode(dx.dtype, &s.get(inputs[0])?[..dx.bytes()]);
    let codes: Vec<u32> = bytemuck::pod_collect_to_vec(&s.get(inputs[1])?[..dq.bytes()]);
    let scales = decode(ds.dtype, &s.get(inputs[2])?[..ds.bytes()]);
    let q =
        Quantized { format, group, n, k: kk, codes, scales: scales.iter().map(|&v| half::f16::from_f32(v)).collect() };
    let w = q.dequantize();
    let rows = dx.shape.numel() / kk.max(1);
    let y = math::matmul(&x, &Shape(vec![rows, kk]), &w, &Shape(vec![n, kk]), true)?;
    let bytes = encode(k.output.dtype, &y);
    s.get_mut(output)?[..bytes.len()].copy_from_slice(&bytes);
    Ok(())
}
