//! The fused mixture-of-experts op (`Op::Moe`) on CUDA.

use super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{Op, TensorDesc};
use crate::{Error, Result};

/// Whether `Op::Moe` has a CUDA kernel for these input types.
pub(super) fn supports(op: &Op, inputs: &[&TensorDesc]) -> bool {
    let _ = (op, inputs);
    false
}

/// Queues the MoE op `k` reading `ins` and writing `y`.
pub(super) fn launch(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64) -> Result<()> {
    let _ = (b, s, ins, y);
    Err(Error::Backend(format!("cuda: {} has no CUDA kernel yet", k.op.name())))
}
