//! Lowering of the fused MoE op with no host synchronisation: router logits (the matmul
//! kernel), routing (softmax, top-k, renormalise), a counting sort of the (token, slot) pairs
//! by expert into tiles of `BM` rows, the grouped gate_up GEMM with SwiGLU in its epilogue, the
//! grouped down GEMM, and the weighted combine. The GEMM grids are sized for the most tiles any
//! routing can need (`pairs / BM + E`); unused tiles exit at once, so the work done follows the
//! tokens routed to each expert. With few pairs per expert (decode) tiles would be mostly
//! padding: then each pair is its own matvec row (no sort), five dispatches in all. Quantized
//! experts (`Op::QMoe`) take the same dispatches with the GEMMs of `shaders/qmoe.wgsl`.

use super::dispatch::{grid, lower as lower_kernel, per_element, u, Dispatch};
use crate::backend::Kernel;
use crate::graph::{moe_dims, qmoe_dims, DType, MoeDims, Op, TensorDesc};
use crate::quant::QFormat;
use crate::{Error, Result};

/// Rows per tile of the grouped GEMMs (`BM` in the shaders).
pub const BM: usize = 16;
/// Most experts the routing kernels handle (workgroup memory of `align`).
pub const MAX_EXPERTS: usize = 512;
/// Most experts per token (private arrays of `route`).
pub const MAX_TOP_K: usize = 64;
/// Pairs per expert (on average) up to which each pair runs as a matvec row.
const VEC_PAIRS_PER_EXPERT: usize = 4;

fn vec_path(d: &MoeDims, pairs: usize) -> bool {
    pairs <= VEC_PAIRS_PER_EXPERT * d.e
}

/// The expert stacks of a fused MoE: dense (`Op::Moe`) or quantized (`Op::QMoe`).
#[derive(Debug, Clone, Copy)]
pub enum Stacks {
    /// Dense stacks, stored `[E, out, in]` when `trans_b`.
    Dense {
        /// Whether stored `[E, out, in]`.
        trans_b: bool,
    },
    /// Quantized stacks (codes and scales each).
    Quantized {
        /// The codes' format.
        format: QFormat,
        /// Inputs per scale.
        group: usize,
    },
}

impl Stacks {
    /// The stacks of `op` (None: not a fused MoE).
    pub fn of(op: &Op) -> Option<(usize, Stacks)> {
        match *op {
            Op::Moe { top_k, trans_b } => Some((top_k, Stacks::Dense { trans_b })),
            Op::QMoe { top_k, format, group } => Some((top_k, Stacks::Quantized { format, group })),
            _ => None,
        }
    }

    /// Inputs of the kernel before the scratch tensors.
    fn inputs(self) -> usize {
        match self {
            Stacks::Dense { .. } => 4,
            Stacks::Quantized { format, .. } => 6 + 2 * format.has_global() as usize,
        }
    }

    /// Shader family of the expert GEMMs, the inputs gate_up's and down's dispatches bind
    /// before the plan or route and after it (NVFP4's global scales), and P[4].
    #[allow(clippy::type_complexity)]
    fn gemms(self) -> (&'static str, [(Vec<usize>, Vec<usize>); 2], u32) {
        match self {
            Stacks::Dense { trans_b } => ("moe", [(vec![2], vec![]), (vec![3], vec![])], trans_b as u32),
            Stacks::Quantized { format, group } => {
                let family = match format {
                    QFormat::Q8 => "qmoe",
                    QFormat::Q4 => "qmoe_q4",
                    QFormat::Q4z => "qmoe_q4z",
                    QFormat::Fp8 => "qmoe_fp8",
                    QFormat::Nvfp4 => "qmoe_nvfp4",
                };
                let tails = if format.has_global() { (vec![6], vec![7]) } else { (vec![], vec![]) };
                (family, [(vec![2, 3], tails.0), (vec![4, 5], tails.1)], group as u32)
            }
        }
    }
}

fn dims(k: &Kernel, top_k: usize, st: Stacks) -> Result<(MoeDims, usize, usize)> {
    let ins: Vec<_> = k.inputs.iter().collect();
    let d = match st {
        Stacks::Dense { trans_b } => moe_dims(top_k, trans_b, &ins)?,
        Stacks::Quantized { format, group } => qmoe_dims(top_k, format, group, &ins)?,
    };
    if d.e > MAX_EXPERTS || d.k > MAX_TOP_K {
        return Err(Error::Backend(format!(
            "wgpu: fused moe supports at most {MAX_EXPERTS} experts and top-k {MAX_TOP_K}, got {} and {}",
            d.e, d.k
        )));
    }
    // Indices into the expert stacks (rows over all experts times the row length) fit 32 bits.
    u(d.e * 2 * d.i * d.h, "expert weights")?;
    let pairs = (d.t * d.k).max(1);
    let mt = (pairs.div_ceil(BM) + d.e).min(pairs);
    Ok((d, pairs, mt))
}

/// Scratch tensors: 0 logits `[T, E]`, 1 route, 2 plan, 3 act `[rows, I]`, 4 y `[rows, H]` (rows:
/// `MT * BM` sorted rows, or one per pair on the few-pairs path, which needs no plan).
pub fn scratch(k: &Kernel, top_k: usize, st: Stacks) -> Result<Vec<TensorDesc>> {
    let (d, pairs, mt) = dims(k, top_k, st)?;
    let dt = k.inputs[0].dtype;
    let rows = if vec_path(&d, pairs) { pairs } else { mt * BM };
    Ok(vec![
        TensorDesc::new(dt, [d.t.max(1), d.e]),
        TensorDesc::new(DType::U32, [2 * pairs]),
        TensorDesc::new(DType::U32, [if vec_path(&d, pairs) { 1 } else { 1 + mt + mt * BM + pairs }]),
        TensorDesc::new(dt, [rows, d.i]),
        TensorDesc::new(dt, [rows, d.h]),
    ])
}

/// The six dispatches. Inputs are x, router, the expert stacks (see [`Stacks`]), then the
/// scratch tensors.
pub fn lower(k: &Kernel, top_k: usize, st: Stacks) -> Result<Vec<Dispatch>> {
    let (d, pairs, mt) = dims(k, top_k, st)?;
    let s0 = st.inputs();
    let (logits, route, plan, act, y) = (s0, s0 + 1, s0 + 2, s0 + 3, s0 + 4);
    let (family, [gu, dn], p4) = st.gemms();
    let router = Kernel {
        op: Op::MatMul { trans_b: true },
        inputs: vec![k.inputs[0].clone(), k.inputs[1].clone()],
        output: TensorDesc::new(k.inputs[0].dtype, [d.t, d.e]),
    };
    let mut v: Vec<Dispatch> = lower_kernel(&router)?;
    for x in &mut v {
        x.output = Some(logits);
    }
    let d32 = |x: usize, what: &str| u(x, what);
    let tiles_y = u(mt, "MoE tiles")?;
    if tiles_y > 65535 {
        return Err(Error::Backend(format!("wgpu: fused moe over {pairs} routed pairs needs {mt} tiles (max 65535)")));
    }
    let disp = |entry: &'static str, family: &'static str, inputs: Vec<usize>, out: Option<usize>, p: Vec<u32>, g| {
        Dispatch { family, entry, inputs, output: out, side: false, params: p, groups: g }
    };
    let with = |a: usize, (w, tail): &(Vec<usize>, Vec<usize>), c: usize| [&[a][..], w, &[c], tail].concat();
    let (t, e, kk) = (d32(d.t, "T")?, d32(d.e, "E")?, d32(d.k, "k")?);
    v.push(disp("route", "moe_route", vec![logits], Some(route), vec![t, e, kk], grid(d.t.div_ceil(64))?));
    let n = d.t * d.h;
    let combine = |direct: bool| -> Result<Vec<u32>> {
        Ok(vec![d32(n, "elements")?, d32(d.h, "H")?, kk, tiles_y, d32(pairs, "pairs")?, direct as u32])
    };
    if vec_path(&d, pairs) {
        let gemv = |inner: usize, cols: usize, two: bool| -> Result<(Vec<u32>, [u32; 3])> {
            let p = vec![d32(inner, "K")?, d32(cols, "N")?, kk, 0, p4, two as u32];
            let [x, y, _] = grid(cols.div_ceil(8))?;
            Ok((p, [x, y, d32(d.t * d.k, "pairs")?]))
        };
        let (p, g) = gemv(d.h, d.i, true)?;
        v.push(disp("gate_up_vec", family, with(0, &gu, route), Some(act), p, g));
        let (p, g) = gemv(d.i, d.h, false)?;
        v.push(disp("down_vec", family, with(act, &dn, route), Some(y), p, g));
        v.push(disp("combine", "moe", vec![y, route, route], None, combine(true)?, per_element(n)?));
        return Ok(v);
    }
    v.push(disp("align", "moe_route", vec![route], Some(plan), vec![d32(pairs, "pairs")?, e, tiles_y], [1, 1, 1]));
    let gemm = |inner: usize, cols: usize, two: bool| -> Result<(Vec<u32>, [u32; 3])> {
        let p = vec![d32(inner, "K")?, d32(cols, "N")?, kk, tiles_y, p4, two as u32];
        Ok((p, [d32(cols.div_ceil(64), "N tiles")?, tiles_y, 1]))
    };
    let (p, g) = gemm(d.h, d.i, true)?;
    v.push(disp("gate_up", family, with(0, &gu, plan), Some(act), p, g));
    let (p, g) = gemm(d.i, d.h, false)?;
    v.push(disp("down", family, with(act, &dn, plan), Some(y), p, g));
    v.push(disp("combine", "moe", vec![y, route, plan], None, combine(false)?, per_element(n)?));
    Ok(v)
}
