//! Dense matmuls through cuBLAS (`cublasGemmStridedBatchedEx`, f32 accumulation), loaded at
//! run time like the driver: where libcublas is absent, or a matmul's operands are not one
//! cuBLAS call (mixed input dtypes, a shared by groups of b's batches), the plain kernel of
//! `cuda/matmul.cu` runs it instead.

use crate::graph::{matmul_dims, DType, TensorDesc};
use crate::{Error, Result};
use cudarc::cublas::result::gemm_strided_batched_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::cublas::CudaBlas;
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// Whether libcublas can be loaded (checked before any cuBLAS call, which would panic).
pub fn available() -> bool {
    // SAFETY: only probes whether the shared library loads.
    std::panic::catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() }).unwrap_or(false)
}

/// A cuBLAS handle on the backend's stream, or why there is none.
pub(super) fn open(stream: &Arc<CudaStream>) -> std::result::Result<CudaBlas, String> {
    if !available() {
        return Err("libcublas not found on the library path".into());
    }
    match std::panic::catch_unwind(|| CudaBlas::new(stream.clone())) {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(format!("creating a cuBLAS handle failed: {e:?}")),
        Err(_) => Err("creating a cuBLAS handle panicked".into()),
    }
}

fn data_type(d: DType) -> Option<cudaDataType> {
    match d {
        DType::F32 => Some(cudaDataType::CUDA_R_32F),
        DType::F16 => Some(cudaDataType::CUDA_R_16F),
        DType::BF16 => Some(cudaDataType::CUDA_R_16BF),
        _ => None,
    }
}

/// The one strided-batched GEMM that computes a matmul (row-major operands), if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gemm {
    /// Rows of each product (a's batches folded in when b serves groups of them).
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    /// Elements between a's / b's / the output's batches (0: shared).
    pub a_stride: usize,
    pub b_stride: usize,
    pub y_stride: usize,
}

/// Maps `Op::MatMul`'s batching onto one strided-batched GEMM: each output batch z reads
/// a's batch z / a_group and b's batch z / b_group. With b serving groups of a's consecutive
/// batches (grouped-query attention), those batches are one taller contiguous matrix.
pub(super) fn plan(a: &TensorDesc, b: &TensorDesc, trans_b: bool) -> Result<Option<Gemm>> {
    let d = matmul_dims(&a.shape, &b.shape, trans_b)?;
    let (m, n, k) = (d.m, d.n, d.k);
    let g = if d.a_group == 1 && d.a_stride == m * k && d.b_group > 1 && d.batch % d.b_group == 0 {
        // a's batches z .. z + b_group share one b: fold them into the rows.
        Gemm {
            m: m * d.b_group,
            n,
            k,
            batch: d.batch / d.b_group,
            a_stride: m * k * d.b_group,
            b_stride: d.b_stride,
            y_stride: m * n * d.b_group,
        }
    } else if (d.a_group == 1 || d.a_stride == 0) && (d.b_group == 1 || d.b_stride == 0) {
        Gemm { m, n, k, batch: d.batch, a_stride: d.a_stride, b_stride: d.b_stride, y_stride: m * n }
    } else {
        return Ok(None);
    };
    let fits = |x: usize| i32::try_from(x).is_ok();
    if ![g.m, g.n, g.k, g.batch].into_iter().all(fits) {
        return Ok(None);
    }
    Ok(Some(g))
}

/// Queues `y = a @ b` through cuBLAS; Ok(false) when cuBLAS cannot run this one.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    blas: &CudaBlas,
    types: (&TensorDesc, &TensorDesc, &TensorDesc),
    trans_b: bool,
    a: u64,
    b: u64,
    y: u64,
) -> Result<bool> {
    let (ta, tb, ty) = types;
    let (Some(da), Some(db), Some(dy)) = (data_type(ta.dtype), data_type(tb.dtype), data_type(ty.dtype)) else {
        return Ok(false);
    };
    if ta.dtype != tb.dtype {
        return Ok(false);
    }
    let Some(g) = plan(ta, tb, trans_b)? else { return Ok(false) };
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(true);
    }
    // Row-major y[m, n] = a[m, k] b[k, n] is column-major y^T[n, m] = b^T a^T: cuBLAS's first
    // operand is b (transposed back when stored [n, k]), its second a.
    let (op_b, ldb) =
        if trans_b { (cublasOperation_t::CUBLAS_OP_T, g.k) } else { (cublasOperation_t::CUBLAS_OP_N, g.n) };
    let (alpha, beta) = (1.0f32, 0.0f32);
    // SAFETY: a, b and y are live device allocations holding at least the elements this
    // product reads and writes (checked against the kernel's types by the caller); alpha and
    // beta are f32 as CUBLAS_COMPUTE_32F requires, read before the call returns.
    unsafe {
        gemm_strided_batched_ex(
            *blas.handle(),
            op_b,
            cublasOperation_t::CUBLAS_OP_N,
            g.n as i32,
            g.m as i32,
            g.k as i32,
            (&alpha as *const f32).cast(),
            b as *const std::ffi::c_void,
            db,
            ldb as i32,
            g.b_stride as i64,
            a as *const std::ffi::c_void,
            da,
            g.k as i32,
            g.a_stride as i64,
            (&beta as *const f32).cast(),
            y as *mut std::ffi::c_void,
            dy,
            g.n as i32,
            g.y_stride as i64,
            g.batch as i32,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| Error::Backend(format!("cuda: cuBLAS matmul {}x{}x{} (batch {}): {e:?}", g.m, g.n, g.k, g.batch)))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> TensorDesc {
        TensorDesc::new(DType::BF16, shape.to_vec())
    }

    #[test]
    fn batching_maps_onto_one_strided_gemm() {
        // A linear layer: weights shared by every row.
        let g = plan(&t(&[7, 64]), &t(&[96, 64]), true).unwrap().unwrap();
        assert_eq!(g, Gemm { m: 7, n: 96, k: 64, batch: 1, a_stride: 0, b_stride: 0, y_stride: 7 * 96 });
        // Grouped-query attention: 8 query heads over 2 KV heads fold into taller products.
        let g = plan(&t(&[8, 5, 16]), &t(&[2, 9, 16]), true).unwrap().unwrap();
        assert_eq!(g, Gemm { m: 20, n: 9, k: 16, batch: 2, a_stride: 320, b_stride: 144, y_stride: 180 });
        // One input through a stack of experts: a shared (stride 0).
        let g = plan(&t(&[1, 3, 16]), &t(&[4, 16, 8]), false).unwrap().unwrap();
        assert_eq!((g.batch, g.a_stride, g.b_stride), (4, 0, 128));
    }
}
