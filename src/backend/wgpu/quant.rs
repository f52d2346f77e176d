//! Lowering of `Op::QMatMul` (`shaders/qmatmul.wgsl`): the few-row GEMV (decode) or the tiled
//! GEMM (prefill), in the shader family of the codes' format.

use super::dispatch::{grid, u, Dispatch};
use crate::backend::Kernel;
use crate::graph::qmatmul_dims;
use crate::quant::QFormat;
use crate::{Error, Result};

/// Rows of x up to which the GEMV path runs (its two vec4 accumulators hold 8 rows).
const GEMV_MAX_ROWS: usize = 8;
/// Outputs per GEMV workgroup, and the tiled path's output tile (shader constants).
const GEMV_N: usize = 8;
const TILE: usize = 64;
/// f32 slots of the GEMV's x chunk in workgroup memory (`xs`).
const XS_FLOATS: usize = 4096;

/// The dispatch computing `k`: x `[..., K]` flattened to M rows, codes `[N, K / per_word]`
/// (or a stack of B weights, the grid's z).
pub fn lower(k: &Kernel, format: QFormat, group: usize) -> Result<Vec<Dispatch>> {
    let ins: Vec<_> = k.inputs.iter().collect();
    let d = qmatmul_dims(format, group, &ins).map_err(|m| Error::shape("qmatmul", m))?;
    let (m, n, kk, batch) = (d.m, d.n, d.k, d.batch);
    if m == 0 || n == 0 || batch == 0 {
        return Ok(vec![]);
    }
    // Every index the shader forms (x, codes, output) must fit 32 bits.
    u(batch * (m * kk).max(m * n).max(n * kk), "qmatmul elements")?;
    let z = u(batch, "weights in the stack")?;
    if z > 65535 {
        return Err(Error::Backend(format!("wgpu: qmatmul over a stack of {batch} weights exceeds the grid")));
    }
    let family = match format {
        QFormat::Q8 => "qmatmul",
        QFormat::Q4 => "qmatmul_q4",
        QFormat::Q4z => "qmatmul_q4z",
        QFormat::Fp8 => "qmatmul_fp8",
        QFormat::Nvfp4 => "qmatmul_nvfp4",
    };
    let mut params = vec![u(m, "M")?, u(n, "N")?, u(kk, "K")?, u(kk / group, "groups")?, u(group, "group")?];
    let (entry, groups) = if m <= GEMV_MAX_ROWS {
        // The shader divides word indices by f32 (exact below 2^21).
        if kk / format.per_word() >= 1 << 21 {
            return Err(Error::Backend(format!("wgpu: qmatmul input size {kk} is too large for the GEMV")));
        }
        let wpg = group / format.per_word();
        // Runs of up to 4 words (16 bytes) that never straddle a group.
        let run = [4, 2, 1].into_iter().find(|r| wpg.is_multiple_of(*r)).unwrap_or(1);
        // x chunks of all M rows fill the 16 KiB of workgroup memory (a multiple of 128 inputs,
        // so of 4 * per_word).
        let kc = (XS_FLOATS / m) / 128 * 128;
        params.extend([u(kc, "chunk")?, run as u32, (1.0 / wpg as f32).to_bits()]);
        let [gx, gy, _] = grid(n.div_ceil(GEMV_N))?;
        (if m == 1 { "qmatvec1" } else { "qmatvec" }, [gx, gy, z])
    } else {
        let (gx, gy) = (n.div_ceil(TILE), m.div_ceil(TILE));
        if gx > 65535 || gy > 65535 {
            return Err(Error::Backend(format!("wgpu: qmatmul of {m} x {n} outputs exceeds the workgroup grid")));
        }
        params.extend([0, 0, 0]);
        ("qmatmul", [gx as u32, gy as u32, z])
    };
    params.push(if d.x_batched { u(m * kk, "x stride")? } else { 0 });
    let inputs = if format.has_global() { vec![0, 1, 2, 3] } else { vec![0, 1, 2] };
    Ok(vec![Dispatch { family, entry, inputs, output: None, side: false, params, groups }])
}
