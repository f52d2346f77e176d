//! `Op::QMatMul` on CUDA (`cuda/qmatmul.cu`, `cuda/qmatmul_tc.cu`): the warp-per-output GEMV
//! for few rows (decode); for many (prefill) tensor-core tiles when x is 16-bit (weights decoded
//! into shared memory), else the f32 shared-memory tiled kernel; a stack of weights is the
//! grid's z.

use super::launch::{dtype_code, per_row};
use super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{qmatmul_dims, DType};
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
    let dt = k.inputs[0].dtype;
    // FP8 activations too, where asked (cuda/qmatmul_f8.cu).
    let f16x = matches!(dt, DType::BF16 | DType::F16);
    // uint4 loads of x's rows and of the codes' rows.
    let aligned = x.is_multiple_of(16) && q.is_multiple_of(16);
    if format == QFormat::Fp8 && f16x && aligned && fp8_activations(&b.info, kk, group) {
        let entry = if dt == DType::F16 { "qmatmul_f8_f16" } else { "qmatmul_f8_bf16" };
        let cfg = LaunchConfig { grid_dim: (gx as u32, gy as u32, z), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let func = b.function(s, entry)?;
        let mut lb = b.stream.launch_builder(&func);
        for p in [&x, &q, &sc, &y, &m64, &n64, &k64, &g64, &xstride] {
            lb.arg(p);
        }
        // SAFETY: the arguments match qmatmul_f8.cu's entries (four pointers, five u64); the
        // buffers were checked against the op's types.
        return unsafe { lb.launch(cfg) }.map(|_| ()).map_err(super::driver_err("launching an FP8 qmatmul"));
    }
    // Tensor cores for 16-bit x whose rows are 16-byte aligned (cuda/qmatmul_tc.cu).
    if f16x && kk.is_multiple_of(8) && x.is_multiple_of(16) && !super::gemv::plain() {
        let entry = tc_entry(dt == DType::F16, format);
        let cfg = LaunchConfig { grid_dim: (gx as u32, gy as u32, z), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let func = b.function(s, entry)?;
        let mut lb = b.stream.launch_builder(&func);
        for p in [&x, &q, &sc, &y, &m64, &n64, &k64, &g64, &xstride, &global] {
            lb.arg(p);
        }
        // SAFETY: the arguments match qmatmul_tc.cu's entries (four pointers, five u64, the
        // global scales' pointer or null); the buffers were checked against the op's types.
        return unsafe { lb.launch(cfg) }.map(|_| ()).map_err(super::driver_err("launching a tensor-core qmatmul"));
    }
    let cfg = LaunchConfig { grid_dim: (gx as u32, gy as u32, z), block_dim: (16, 16, 1), shared_mem_bytes: 0 };
    kernel!(b, s, "qmatmul_tiled", cfg, x, q, sc, y, m64, n64, k64, g64, bits, dx, xstride, global)
}

/// Whether the device `info` runs FP8 weights of `k` inputs in groups of `group` with FP8
/// activations at prefill (W8A8 on tensor cores, cuda/qmatmul_f8.cu; for 16-bit x of more than
/// 8 rows, 16-byte aligned x and codes): asked for with `LUMEN_CUDA_FP8_ACTIVATIONS=1`, on a
/// CUDA device whose tensor cores take E4M3 (compute capability 8.9 and up), tuned kernels on
/// (`LUMEN_CUDA_PLAIN` unset), 32-input steps within a group. Off by default: x rounded to E4M3
/// (a scale per row and 32 inputs) moves results off the W8A16 oracle by about 2.4%.
pub fn fp8_activations(info: &crate::backend::DeviceInfo, k: usize, group: usize) -> bool {
    let asked = std::env::var_os("LUMEN_CUDA_FP8_ACTIVATIONS").is_some_and(|v| !v.is_empty() && v != "0");
    asked
        && info.backend == "cuda"
        && info.fp8_mma
        && !super::gemv::plain()
        && k.is_multiple_of(32)
        && group.is_multiple_of(32)
}

/// The tensor-core qmatmul entry for x in f16 (else bf16) and `format`.
fn tc_entry(f16: bool, format: QFormat) -> &'static str {
    match (f16, format) {
        (false, QFormat::Q8) => "qmatmul_tc_bf16_q8",
        (false, QFormat::Q4) => "qmatmul_tc_bf16_q4",
        (false, QFormat::Q4z) => "qmatmul_tc_bf16_q4z",
        (false, QFormat::Fp8) => "qmatmul_tc_bf16_fp8",
        (false, QFormat::Nvfp4) => "qmatmul_tc_bf16_nvfp4",
        (true, QFormat::Q8) => "qmatmul_tc_f16_q8",
        (true, QFormat::Q4) => "qmatmul_tc_f16_q4",
        (true, QFormat::Q4z) => "qmatmul_tc_f16_q4z",
        (true, QFormat::Fp8) => "qmatmul_tc_f16_fp8",
        (true, QFormat::Nvfp4) => "qmatmul_tc_f16_nvfp4",
    }
}
