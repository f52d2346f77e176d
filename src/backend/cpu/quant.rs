//! `Op::QMatMul` and `Op::QMoe` on the oracle: the codes read as raw words (never through
//! f32), each weight dequantized plainly, then the ordinary matmul (the fused MoE's, for
//! `QMoe`, dequantizing only the experts a token was routed to).

use super::math;
use super::State;
use crate::backend::{BufferId, Kernel};
use crate::graph::{qmatmul_dims, qmoe_dims, Shape};
use crate::quant::{scales_from_bytes, zeros_from_bytes, QFormat, Quantized};
use crate::tensor::{decode, encode};
use crate::{Error, Result};
use std::borrow::Cow;

/// A stack's codes, scales, zero points (Q4z) and the global scale of one of its weights.
type Parts<'a> = (&'a [u32], &'a [f32], &'a [u8], f32);

/// Rows `rows` (of `k` inputs each) of a quantized stack read from raw codes and scales, times
/// `global` (NVFP4's global scale; 1 otherwise).
fn dequantize(
    format: QFormat,
    group: usize,
    (codes, scales, zeros, global): Parts<'_>,
    rows: std::ops::Range<usize>,
    k: usize,
) -> Vec<f32> {
    let (wpr, spr) = (k / format.per_word(), k / group);
    let q = Quantized {
        format,
        group,
        n: rows.len(),
        k,
        codes: codes[rows.start * wpr..rows.end * wpr].to_vec(),
        scales: scales[rows.start * spr..rows.end * spr].to_vec(),
        zeros: zeros.get(rows.start * spr..rows.end * spr).unwrap_or_default().to_vec(),
        global,
    };
    q.dequantize()
}

/// The global scales of a stack of `b` weights, input `at` of `k` when it has one, else 1s.
fn globals(k: &Kernel, s: &State, inputs: &[BufferId], at: usize, b: usize) -> Result<Vec<f32>> {
    match (k.inputs.get(at), inputs.get(at)) {
        (Some(d), Some(&id)) => Ok(decode(d.dtype, &s.get(id)?[..d.bytes()])),
        _ => Ok(vec![1.0; b]),
    }
}

fn words(s: &State, id: BufferId, bytes: usize) -> Result<Vec<u32>> {
    Ok(bytemuck::pod_collect_to_vec(&s.get(id)?[..bytes]))
}

pub(super) fn qmatmul(
    k: &Kernel,
    s: &mut State,
    inputs: &[BufferId],
    output: BufferId,
    format: QFormat,
    group: usize,
) -> Result<()> {
    let (dx, dq, ds) = (&k.inputs[0], &k.inputs[1], &k.inputs[2]);
    let descs: Vec<_> = k.inputs.iter().collect();
    let d = qmatmul_dims(format, group, &descs).map_err(|m| Error::shape("qmatmul", m))?;
    let x = decode(dx.dtype, &s.get(inputs[0])?[..dx.bytes()]);
    let codes = words(s, inputs[1], dq.bytes())?;
    let scale_bytes = &s.get(inputs[2])?[..ds.bytes()];
    let (scales, zeros) = (scales_from_bytes(format, scale_bytes), zeros_from_bytes(format, scale_bytes));
    let globals = globals(k, s, inputs, 3, d.batch)?;
    let mut y = Vec::with_capacity(d.batch * d.m * d.n);
    for b in 0..d.batch {
        let w = dequantize(format, group, (&codes, &scales, &zeros, globals[b]), b * d.n..(b + 1) * d.n, d.k);
        let xb = if d.x_batched { &x[b * d.m * d.k..(b + 1) * d.m * d.k] } else { &x[..d.m * d.k] };
        y.extend(math::matmul(xb, &Shape(vec![d.m, d.k]), &w, &Shape(vec![d.n, d.k]), true)?);
    }
    let bytes = encode(k.output.dtype, &y);
    s.get_mut(output)?[..bytes.len()].copy_from_slice(&bytes);
    Ok(())
}

pub(super) fn qmoe(
    k: &Kernel,
    s: &mut State,
    inputs: &[BufferId],
    output: BufferId,
    top_k: usize,
    format: QFormat,
    group: usize,
) -> Result<()> {
    let descs: Vec<_> = k.inputs.iter().collect();
    let d = qmoe_dims(top_k, format, group, &descs)?;
    let f = |i: usize| -> Result<Vec<f32>> { Ok(decode(descs[i].dtype, &s.get(inputs[i])?[..descs[i].bytes()])) };
    let sc = |i: usize| -> Result<(Vec<f32>, Vec<u8>)> {
        let bytes = &s.get(inputs[i])?[..descs[i].bytes()];
        Ok((scales_from_bytes(format, bytes), zeros_from_bytes(format, bytes)))
    };
    let (x, router, (gus, guz), (dns, dnz)) = (f(0)?, f(1)?, sc(3)?, sc(5)?);
    let (guc, dnc) = (words(s, inputs[2], descs[2].bytes())?, words(s, inputs[4], descs[4].bytes())?);
    let (gug, dng) = (globals(k, s, inputs, 6, d.e)?, globals(k, s, inputs, 7, d.e)?);
    let (h, i) = (d.h, d.i);
    let experts = |ex: usize| -> Result<super::moe::Pair<'_>> {
        let gu = dequantize(format, group, (&guc, &gus, &guz, gug[ex]), ex * 2 * i..(ex + 1) * 2 * i, h);
        let dn = dequantize(format, group, (&dnc, &dns, &dnz, dng[ex]), ex * h..(ex + 1) * h, i);
        Ok((Cow::Owned(gu), Cow::Owned(dn)))
    };
    let y = super::moe::moe(&x, &router, &experts, d, true, descs[0].dtype)?;
    let bytes = encode(k.output.dtype, &y);
    s.get_mut(output)?[..bytes.len()].copy_from_slice(&bytes);
    Ok(())
}
