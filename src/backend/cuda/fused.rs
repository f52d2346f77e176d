//! The fused ops of the graph compiler on CUDA: attention, per-head norm + rotary, add +
//! RMSNorm (with the residual sum as a side output), elementwise programs and matmul
//! epilogues.

use super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{Op, TensorDesc};
use crate::{Error, Result};

/// Whether a fused op has a CUDA kernel for these input types.
pub(super) fn supports(op: &Op, inputs: &[&TensorDesc]) -> bool {
    let _ = (op, inputs);
    false
}

/// Queues fused kernel `k` reading `ins` and writing `y` (and `side`, for ops with a side output).
pub(super) fn launch(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64, side: Option<u64>) -> Result<()> {
    let _ = (b, s, ins, y, side);
    Err(Error::Backend(format!("cuda: {} has no CUDA kernel yet", k.op.name())))
}
