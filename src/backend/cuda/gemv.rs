//! Decode GEMV / small-batch GEMM (`cuda/gemv.cu`): linear layers with at most eight rows of
//! activations and 16-bit weights stored [n, k], where a decode step spends its time. cuBLAS
//! (or the plain kernel) runs everything else, and everything when `LUMEN_CUDA_PLAIN` is set.

use super::launch::dtype_code;
use super::{CudaBackend, State};
use crate::graph::{matmul_dims, DType, TensorDesc};
use crate::Result;
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Most activation rows per launch (`GEMV_M` in cuda/gemv.cu).
pub(super) const MAX_ROWS: usize = 8;
/// Bytes of activations kept in shared memory (above it the kernel reads them through L1).
const STAGE_BYTES: usize = 48 << 10;

/// Whether tuned kernels are turned off (`LUMEN_CUDA_PLAIN=1`): cuBLAS and the plain kernels
/// run every op, for comparison and as a fallback.
pub(crate) fn plain() -> bool {
    std::env::var_os("LUMEN_CUDA_PLAIN").is_some_and(|v| !v.is_empty() && v != "0")
}

/// One GEMV launch: rows of activations, outputs, inner size, K splits per output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gemv {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ks: usize,
    pub stage: bool,
}

/// The GEMV that computes this matmul, if it is one: b (the weight) 16-bit and shared by every
/// batch, stored [n, k] with k a multiple of 8, and at most [`MAX_ROWS`] rows of a in all.
pub(super) fn plan(types: (&TensorDesc, &TensorDesc, &TensorDesc), trans_b: bool, sms: usize) -> Option<Gemv> {
    let (ta, tb, ty) = types;
    if !trans_b || !matches!(tb.dtype, DType::BF16 | DType::F16) || !ta.dtype.is_float() || !ty.dtype.is_float() {
        return None;
    }
    let d = matmul_dims(&ta.shape, &tb.shape, trans_b).ok()?;
    // Batches share b and are contiguous in a: they are more rows of one product.
    if d.b_stride != 0 || d.a_group != 1 {
        return None;
    }
    let m = d.m * d.batch;
    if m == 0 || m > MAX_ROWS || d.n == 0 || d.k == 0 || !d.k.is_multiple_of(8) || u32::try_from(d.k).is_err() {
        return None;
    }
    // Fewest K splits that still give every SM two blocks (narrow outputs split K more).
    let ks = [1usize, 2, 4, 8].into_iter().find(|ks| d.n.div_ceil(8 / ks) >= 2 * sms.max(1)).unwrap_or(8);
    let blocks = d.n.div_ceil(8 / ks);
    if u32::try_from(blocks).is_err() || blocks > i32::MAX as usize {
        return None;
    }
    Some(Gemv { m, n: d.n, k: d.k, ks, stage: m * d.k * 4 <= STAGE_BYTES })
}

/// Queues the GEMV; Ok(false) when this matmul is not one (or its weight is not 16-byte
/// aligned), so the caller runs it another way.
pub(super) fn launch(
    b: &CudaBackend,
    s: &mut State,
    types: (&TensorDesc, &TensorDesc, &TensorDesc),
    trans_b: bool,
    x: u64,
    w: u64,
    y: u64,
) -> Result<bool> {
    if plain() || !w.is_multiple_of(16) {
        return Ok(false);
    }
    let Some(g) = plan(types, trans_b, b.sms) else { return Ok(false) };
    if !g.stage && !x.is_multiple_of(16) {
        return Ok(false); // unstaged, x is read in 16-byte vectors
    }
    let cfg = LaunchConfig {
        grid_dim: (g.n.div_ceil(8 / g.ks) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: if g.stage { (g.m * g.k * 4) as u32 } else { 0 },
    };
    let (m, n, k, ks) = (g.m as u32, g.n as u32, g.k as u32, g.ks as u32);
    let (dx, dw, dy) = (dtype_code(types.0.dtype), dtype_code(types.1.dtype), dtype_code(types.2.dtype));
    if g.stage {
        kernel!(b, s, "gemv", cfg, x, w, y, m, n, k, ks, dx, dw, dy)?;
    } else {
        kernel!(b, s, "gemv_unstaged", cfg, x, w, y, m, n, k, ks, dx, dw, dy)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(d: DType, shape: &[usize]) -> TensorDesc {
        TensorDesc::new(d, shape.to_vec())
    }

    #[test]
    fn decode_linears_take_the_gemv_and_narrow_ones_split_k() {
        let (x, y) = (t(DType::BF16, &[1, 4096]), t(DType::F32, &[1, 12288]));
        let g = plan((&x, &t(DType::BF16, &[12288, 4096]), &y), true, 132).unwrap();
        assert_eq!(g, Gemv { m: 1, n: 12288, k: 4096, ks: 1, stage: true });
        // A router: 128 outputs need every warp of a block on one row.
        let g = plan((&x, &t(DType::BF16, &[128, 4096]), &t(DType::F32, &[1, 128])), true, 132).unwrap();
        assert_eq!(g.ks, 8);
        // Eight rows of a [2, 4, K] batch fold into one product; 8 x 4096 f32 is past the stage.
        let g = plan((&t(DType::F32, &[2, 4, 4096]), &t(DType::BF16, &[512, 4096]), &y), true, 132).unwrap();
        assert_eq!((g.m, g.stage), (8, false));
        // Not a GEMV: nine rows, f32 weights, K not a multiple of 8, weights per batch, [K, N].
        let b = t(DType::BF16, &[512, 4096]);
        assert!(plan((&t(DType::BF16, &[9, 4096]), &b, &y), true, 132).is_none());
        assert!(plan((&x, &t(DType::F32, &[512, 4096]), &y), true, 132).is_none());
        assert!(plan((&t(DType::BF16, &[1, 4092]), &t(DType::BF16, &[512, 4092]), &y), true, 132).is_none());
        assert!(plan((&t(DType::BF16, &[2, 1, 64]), &t(DType::BF16, &[2, 8, 64]), &y), true, 132).is_none());
        assert!(plan((&x, &t(DType::BF16, &[4096, 512]), &y), false, 132).is_none());
    }
}
