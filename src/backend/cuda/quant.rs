//! `Op::QMatMul` on CUDA (`cuda/qmatmul.cu`): the warp-per-output GEMV for few rows (decode),
//! the shared-memory tiled kernel for many (prefill); a stack of weights is the grid's z.

use super::launch::{dtype_code, per_row};
use super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::qmatmul_dims;
use crate::quant::QFormat;
use crate::{Error, Result};
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Rows of x up to which the GEMV runs (`QG_ROWS`: its per-lane accumulators).
const GEMV_MAX_ROWS: usize = 8;
/// Outputs per GEMV block (a warp each, `QG_WARPS`) and the tiled kernel's output tile.
const GEMV_N: usize = 8;
const TILE: usize = 64;

/// The kernels' id of a format (`QFmt` in cuda/prelude.cuh).
pub(super) fn format_id(format: QFormat) -> i32 {
    match format {
        QFormat::Q8 => 8,
        QFormat::Q4 => 4,
        QFormat::Q4z => 5,
        QFormat::Fp8 => 9,
        QFormat::Nvfp4 => 10,
    }
}

/// Queues `y = x @ dequant(codes, scales)^T`; `ins` are x, codes, scales.
pub(super) fn launch(
    b: &CudaBackend,
    s: &mut State,
    k: &Kernel,
    ins: &[u64],
    y: u64,
    format: QFormat,
    group: usize,
) -> Result<()> {
    let ins_d: Vec<_> = k.inputs.iter().collect();
    let d = qmatmul_dims(format, group, &ins_d).map_err(|m| Error::shape("qmatmul", m))?;
    let (m, n, kk) = (d.m, d.n, d.k);
    if m == 0 || n == 0 || d.batch == 0 {
        return Ok(());
    }
    // Offsets within a row of x or of codes are 32-bit in the kernels; the stack is grid z.
    if u32::try_from(kk).is_err() {
        return Err(Error::Backend(format!("cuda: qmatmul input size {kk} exceeds 32 bits")));
    }
    if d.batch > 65535 {
        return Err(Error::Backend(format!("cuda: a stack of {} weights exceeds the grid's 65535 z", d.batch)));
    }
    let (x, q, sc) = (ins[0], ins[1], ins[2]);
    // NVFP4's global scales (one per weight); a null pointer for the other formats.
    let global = ins.get(3).copied().unwrap_or(0);
    let (m64, n64, k64, g64) = (m as u64, n as u64, kk as u64, group as u64);
    let xstride = if d.x_batched { (m * kk) as u64 } else { 0 };
    let (bits, dx) = (format_id(format), dtype_code(k.inputs[0].dtype));
    let z = d.batch as u32;
    if m <= GEMV_MAX_ROWS {
        let mut cfg = per_row(n.div_ceil(GEMV_N));
        cfg.grid_dim.2 = z;
        return kernel!(b, s, "qmatmul", cfg, x, q, sc, y, m64, n64, k64, g64, bits, dx, xstride, global);
    }
    let (gx, gy) = (n.div_ceil(TILE), m.div_ceil(TILE));
    if gy > 65535 || u32::try_from(gx).is_err() {
        return Err(Error::Backend(format!("cuda: qmatmul of {m} x {n} outputs exceeds the grid")));
    }
    let cfg = LaunchConfig { grid_dim: (gx as u32, gy as u32, z), block_dim: (16, 16, 1), shared_mem_bytes: 0 };
    kernel!(b, s, "qmatmul_tiled", cfg, x, q, sc, y, m64, n64, k64, g64, bits, dx, xstride, global)
}
