//! Lowering of the fused MoE op with no host synchronisation: router logits (the matmul
//! kernel), routing (softmax, top-k, renormalise), a counting sort of the (token, slot) pairs
//! by expert into tiles of `BM` rows, the grouped gate_up GEMM with SwiGLU in its epilogue, the
//! grouped down GEMM, and the weighted combine. The GEMM grids are sized for the most tiles any
//! routing can need (`pairs / BM + E`); unused tiles exit at once, so the work done follows the
//! tokens routed to each expert. With few pairs per expert (decode) tiles would be mostly
//! padding: then each pair is its own matvec row (no sort), five dispatches in all.

use super::dispatch::{grid, lower as lower_kernel, per_element, u, Dispatch};
use crate::backend::Kernel;
use crate::graph::{moe_dims, DType, MoeDims, Op, TensorDesc};
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

fn dims(k: &Kernel, top_k: usize, trans_b: bool) -> Result<(MoeDims, usize, usize)> {
    let d = moe_dims(top_k, trans_b, &k.inputs.iter().collect::<Vec<_>>())?;
    if d.e > MAX_EXPERTS || d.k > MAX_TOP_K {
        return Err(Error::Backend(format!(
            "wgpu: fused moe supports at most {MAX_EXPERTS} experts and top-k {MAX_TOP_K}, got {} and {}",
            d.e, d.k
        )));
    }
    let pairs = (d.t * d.k).max(1);
    let mt = (pairs.div_ceil(BM) + d.e).min(pairs);
    Ok((d, pairs, mt))
}

/// Scratch tensors: 0 logits `[T, E]`, 1 route, 2 plan, 3 act `[rows, I]`, 4 y `[rows, H]` (rows:
/// `MT * BM` sorted rows, or one per pair on the few-pairs path, which needs no plan).
pub fn scratch(k: &Kernel, top_k: usize, trans_b: bool) -> Result<Vec<TensorDesc>> {
    let (d, pairs, mt) = dims(k, top_k, trans_b)?;
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

/// The six dispatches. Inputs 0..4 are x, router, gate_up, down; 4..9 the scratch tensors.
pub fn lower(k: &Kernel, top_k: usize, trans_b: bool) -> Result<Vec<Dispatch>> {
    let (d, pairs, mt) = dims(k, top_k, trans_b)?;
    let (logits, route, plan, act, y) = (4, 5, 6, 7, 8);
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
    let (t, e, kk) = (d32(d.t, "T")?, d32(d.e, "E")?, d32(d.k, "k")?);
    v.push(disp("route", "moe_route", vec![logits], Some(route), vec![t, e, kk], grid(d.t.div_ceil(64))?));
    let n = d.t * d.h;
    let combine = |direct: bool| -> Result<Vec<u32>> {
        Ok(vec![d32(n, "elements")?, d32(d.h, "H")?, kk, tiles_y, d32(pairs, "pairs")?, direct as u32])
    };
    if vec_path(&d, pairs) {
        let gemv = |inner: usize, cols: usize, two: bool| -> Result<(Vec<u32>, [u32; 3])> {
            let p = vec![d32(inner, "K")?, d32(cols, "N")?, kk, 0, trans_b as u32, two as u32];
            let [x, y, _] = grid(cols.div_ceil(8))?;
            Ok((p, [x, y, d32(d.t * d.k, "pairs")?]))
        };
        let (p, g) = gemv(d.h, d.i, true)?;
        v.push(disp("gate_up_vec", "moe", vec![0, 2, route], Some(act), p, g));
        let (p, g) = gemv(d.i, d.h, false)?;
        v.push(disp("down_vec", "moe", vec![act, 3, route], Some(y), p, g));
        v.push(disp("combine", "moe", vec![y, route, route], None, combine(true)?, per_element(n)?));
        return Ok(v);
    }
    v.push(disp("align", "moe_route", vec![route], Some(plan), vec![d32(pairs, "pairs")?, e, tiles_y], [1, 1, 1]));
    let gemm = |inner: usize, cols: usize, two: bool| -> Result<(Vec<u32>, [u32; 3])> {
        let p = vec![d32(inner, "K")?, d32(cols, "N")?, kk, tiles_y, trans_b as u32, two as u32];
        Ok((p, [d32(cols.div_ceil(64), "N tiles")?, tiles_y, 1]))
    };
    let (p, g) = gemm(d.h, d.i, true)?;
    v.push(disp("gate_up", "moe", vec![0, 2, plan], Some(act), p, g));
    let (p, g) = gemm(d.i, d.h, false)?;
    v.push(disp("down", "moe", vec![act, 3, plan], Some(y), p, g));
    v.push(disp("combine", "moe", vec![y, route, plan], None, combine(false)?, per_element(n)?));
    Ok(v)
}
