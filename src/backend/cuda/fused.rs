//! The fused ops of the graph compiler on CUDA: attention, per-head norm + rotary, add +
//! RMSNorm (with the residual sum as a side output), elementwise programs and matmul
//! epilogues.

mod attention;
mod program;

use super::launch::{dtype_code, per_row};
use super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{Op, RopeStyle, TensorDesc};
use crate::{Error, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Whether a fused op has a CUDA kernel for these input types.
pub(super) fn supports(op: &Op, inputs: &[&TensorDesc]) -> bool {
    let float = inputs.iter().all(|d| d.dtype.is_float());
    match op {
        Op::Attention { .. } => inputs.len() >= 3 && float && attention::fits(inputs),
        Op::RopeHeads { .. } | Op::AddRmsNorm { .. } => float,
        Op::Elementwise { code, .. } => {
            let out = inputs.iter().try_fold(crate::graph::Shape(vec![]), |s, d| crate::graph::broadcast(&s, &d.shape));
            float && !inputs.is_empty() && out.is_some_and(|o| program::fits(code, inputs.len(), &o))
        }
        Op::MatMulEpilogue { trans_b, code, .. } => {
            float
                && inputs.len() >= 2
                && inputs.iter().all(|d| d.shape.rank() <= 6)
                && program::epilogue_fits(code, inputs, *trans_b)
        }
        _ => false,
    }
}

/// Queues fused kernel `k` reading `ins` and writing `y` (and `side`, for ops with a side output).
pub(super) fn launch(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64, side: Option<u64>) -> Result<()> {
    if side.is_some() && !matches!(k.op, Op::AddRmsNorm { .. }) {
        return Err(Error::Backend(format!("cuda: {} has no side output", k.op.name())));
    }
    match &k.op {
        Op::Attention { .. } => attention::launch(b, s, k, ins, y),
        Op::Elementwise { .. } => program::elementwise(b, s, k, ins, y),
        Op::MatMulEpilogue { .. } => program::epilogue(b, s, k, ins, y),
        Op::AddRmsNorm { eps } => add_rms_norm(b, s, k, ins, y, side, *eps),
        Op::RopeHeads { style, norm } => rope_heads(b, s, k, ins, y, *style, *norm),
        _ => Err(Error::Backend(format!("cuda: {} is not a fused op", k.op.name()))),
    }
}

/// `rms_norm(round(a + b)) * w` per row (`cuda/rms_norm.cu`), the rounded sum also stored in
/// `side` when given.
fn add_rms_norm(
    b: &CudaBackend,
    s: &mut State,
    k: &Kernel,
    ins: &[u64],
    y: u64,
    side: Option<u64>,
    eps: f32,
) -> Result<()> {
    let x0 = &k.inputs[0].shape;
    let (a, bb, w, sd) = (ins[0], ins[1], ins[2], side.unwrap_or(0));
    let (rows, c) = (x0.rows() as u64, x0.last() as u64);
    let (has_b, has_side) = (1i32, side.is_some() as i32);
    let (da, dw, dy) = (dtype_code(k.inputs[0].dtype), dtype_code(k.inputs[2].dtype), dtype_code(k.output.dtype));
    if x0.numel() == 0 {
        return Ok(());
    }
    kernel!(b, s, "rms_norm", per_row(x0.rows()), a, bb, w, y, sd, rows, c, eps, has_b, has_side, da, dw, dy)
}

/// Optional per-head RMSNorm, rotary, heads-first (`cuda/rope_heads.cu`): one block per
/// (token, head) row.
fn rope_heads(
    b: &CudaBackend,
    s: &mut State,
    k: &Kernel,
    ins: &[u64],
    y: u64,
    style: RopeStyle,
    norm: Option<f32>,
) -> Result<()> {
    let sh = &k.inputs[0].shape.0;
    let (t, h, d) = (sh[0] as u64, sh[1] as u64, sh[2] as u64);
    let half = k.inputs[1].shape.0[1] as u64;
    let (x, cs, sn, w) = (ins[0], ins[1], ins[2], ins.get(3).copied().unwrap_or(0));
    let (eps, has_norm, inter) = (norm.unwrap_or(0.0), norm.is_some() as i32, (style == RopeStyle::Interleaved) as i32);
    let dw = dtype_code(k.inputs.get(3).map_or(k.inputs[0].dtype, |d| d.dtype));
    let (dx, dy) = (dtype_code(k.inputs[0].dtype), dtype_code(k.output.dtype));
    let rows = (t * h) as usize;
    if rows == 0 || d == 0 {
        return Ok(());
    }
    let cfg = LaunchConfig { block_dim: (128, 1, 1), ..per_row(rows) };
    kernel!(b, s, "rope_heads", cfg, x, cs, sn, w, y, t, h, d, half, eps, has_norm, inter, dx, dw, dy)
}
