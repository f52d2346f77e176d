//! One kernel launch on CUDA: the op's parameters marshalled for its `cuda/<family>.cu`
//! kernel. Ops without a kernel yet are reported as such.

use super::{CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{matmul_dims, DType, Op, RopeStyle, TensorDesc};
use crate::{Error, Result};
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};

/// Dims and two stride sets padded to rank 6, as `cuda/prelude.cuh`'s `Layout6`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct Layout6 {
    dims: [u64; 6],
    sa: [u64; 6],
    sb: [u64; 6],
}

// SAFETY: plain old data with the C layout the kernels declare.
unsafe impl DeviceRepr for Layout6 {}

pub(super) fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::I32 => 3,
        DType::U32 => 4,
    }
}

pub(super) fn per_element(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).max(1) as u32;
    let x = blocks.min(65535);
    LaunchConfig { grid_dim: (x, blocks.div_ceil(x), 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

pub(super) fn per_row(rows: usize) -> LaunchConfig {
    let rows = rows.max(1) as u32;
    let x = rows.min(65535);
    LaunchConfig { grid_dim: (x, rows.div_ceil(x), 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

pub(super) fn layout(dims: &[usize], sa: &[usize], sb: &[usize]) -> Result<Layout6> {
    if dims.len() > 6 {
        return Err(Error::Backend(format!("cuda: rank {} exceeds 6", dims.len())));
    }
    let mut l = Layout6 { dims: [1; 6], ..Default::default() };
    let pad = 6 - dims.len();
    for i in 0..dims.len() {
        l.dims[pad + i] = dims[i] as u64;
        l.sa[pad + i] = sa[i] as u64;
        l.sb[pad + i] = sb[i] as u64;
    }
    Ok(l)
}

/// A strided copy of input `x` (see `cuda/copy.cu`).
#[allow(clippy::too_many_arguments)]
fn copy(
    b: &CudaBackend,
    s: &mut State,
    k: &Kernel,
    x: u64,
    y: u64,
    l: Layout6,
    offs: (usize, usize),
    input: usize,
) -> Result<()> {
    let n: u64 = l.dims.iter().product();
    let (src_off, dst_off) = (offs.0 as u64, offs.1 as u64);
    let (dx, dy) = (dtype_code(k.inputs[input].dtype), dtype_code(k.output.dtype));
    let bits =
        (k.inputs[input].dtype == k.output.dtype || (k.inputs[input].dtype.is_int() && k.output.dtype.is_int())) as i32;
    let esize = k.output.dtype.size() as i32;
    kernel!(b, s, "copy", per_element(n as usize), x, y, n, l, src_off, dst_off, dx, dy, bits, esize)
}

/// Queues kernel `k` reading `ins` and writing `y` (device pointers).
pub(super) fn launch(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64) -> Result<()> {
    let out = &k.output.shape;
    let n = out.numel();
    let n64 = n as u64;
    let dy = dtype_code(k.output.dtype);
    if let Op::Random { seed, offset, scale, .. } = k.op {
        return kernel!(b, s, "random", per_element(n), y, n64, seed, offset, scale, dy);
    }
    let (Some(first), Some(&x)) = (k.inputs.first(), ins.first()) else {
        return Err(Error::Backend(format!("cuda: {} needs an input", k.op.name())));
    };
    let (x0, dx) = (&first.shape, dtype_code(first.dtype));
    let unary = |s: &mut State, op: i32, f: f32| -> Result<()> {
        kernel!(b, s, "unary", per_element(n), x, y, n64, op, f, dx, dy)
    };
    match &k.op {
        Op::Input { .. } | Op::Reshape(_) | Op::Random { .. } => Ok(()),
        Op::QMatMul { format, group } => super::quant::launch(b, s, k, ins, y, *format, *group),
        Op::PagedAttention { scale, block_size } => {
            let descs: Vec<&TensorDesc> = k.inputs.iter().collect();
            let p = crate::graph::paged_dims(*block_size, &descs)?;
            if p.d > 256 || p.dv > 256 || k.inputs[5].dtype != DType::I32 {
                return Err(Error::Backend("cuda: paged attention needs heads of at most 256 and an i32 index".into()));
            }
            let (q, kn, vn, kp, vp, ix) = (x, ins[1], ins[2], ins[3], ins[4], ins[5]);
            let [t, hq, hkv, d, dv, bs] = [p.t, p.hq, p.hkv, p.d, p.dv, *block_size].map(|v| v as u64);
            let (cols, scale) = ((crate::graph::PAGED_META + p.max_blocks) as u64, *scale);
            let [dk, dvn, dkp, dvp] = [1, 2, 3, 4].map(|i| dtype_code(k.inputs[i].dtype));
            if let Some((entry, cfg)) = paged_gqa(k, &p, &[kn, vn, kp, vp]) {
                let dt = dtype_code(k.inputs[1].dtype);
                let func = b.function(s, entry)?;
                let mut lb = b.stream.launch_builder(&func);
                lb.arg(&q).arg(&kn).arg(&vn).arg(&kp).arg(&vp).arg(&ix).arg(&y);
                lb.arg(&hq).arg(&hkv).arg(&d).arg(&bs).arg(&cols).arg(&scale).arg(&dx).arg(&dt).arg(&dy);
                // SAFETY: the arguments match paged_gqa's entries; the buffers were checked
                // against the op's types (paged_dims) and are 16-byte aligned (paged_gqa).
                return unsafe { lb.launch(cfg) }.map(|_| ()).map_err(super::driver_err("launching paged attention"));
            }
            let cfg = per_row(p.t * p.hq);
            kernel!(
                b,
                s,
                "paged_attention",
                cfg,
                q,
                kn,
                vn,
                kp,
                vp,
                ix,
                y,
                t,
                hq,
                hkv,
                d,
                dv,
                bs,
                cols,
                scale,
                dx,
                dk,
                dvn,
                dkp,
                dvp,
                dy
            )
        }
        Op::WriteRows { rows } => {
            if k.inputs[1].dtype != DType::I32 {
                return Err(Error::Backend("cuda: write_rows needs i32 indices".into()));
            }
            let (n_el, cols) = (k.inputs[0].shape.numel() as u64, (k.inputs[0].shape.numel() / x0.0[0].max(1)) as u64);
            let (idx, base_rows, acc, dr) = (ins[1], *rows as u64, 0i32, dx);
            kernel!(b, s, "scatter", per_element(n_el as usize), x, idx, y, n_el, cols, base_rows, acc, dr, dy)
        }
        Op::Unary(u) => unary(s, u.code() as i32, 0.0),
        Op::Scale(f) => unary(s, 5, *f),
        Op::Cast(to) if k.inputs[0].dtype.is_int() && to.is_int() => {
            copy(b, s, k, x, y, layout(&[n], &[1], &[1])?, (0, 0), 0)
        }
        Op::Cast(_) => unary(s, 6, 0.0),
        Op::Binary(_) | Op::SwiGlu => {
            let op = match k.op {
                Op::Binary(op) => op.code() as i32,
                _ => 4,
            };
            let l = layout(&out.0, &x0.broadcast_strides(out), &k.inputs[1].shape.broadcast_strides(out))?;
            let (a, bb, db) = (x, ins[1], dtype_code(k.inputs[1].dtype));
            kernel!(b, s, "binary", per_element(n), a, bb, y, n64, op, l, dx, db, dy)
        }
        Op::Permute(perm) => {
            let st = x0.strides();
            let src: Vec<usize> = perm.iter().map(|&a| st[a]).collect();
            copy(b, s, k, x, y, layout(&out.0, &src, &out.strides())?, (0, 0), 0)
        }
        Op::Slice { axis, start, .. } => {
            let st = x0.strides();
            copy(b, s, k, x, y, layout(&out.0, &st, &out.strides())?, (start * st[*axis], 0), 0)
        }
        Op::Concat { axis } => {
            let ost = out.strides();
            let mut at = 0;
            for (i, d) in k.inputs.iter().enumerate() {
                let l = layout(&d.shape.0, &d.shape.strides(), &ost)?;
                copy(b, s, k, ins[i], y, l, (0, at * ost[*axis]), i)?;
                at += d.shape.0[*axis];
            }
            Ok(())
        }
        Op::Gather => {
            let (cols, rows) = (x0.0[1] as u64, x0.0[0] as u64);
            let idx = ins[1];
            kernel!(b, s, "gather", per_element(n), x, idx, y, n64, cols, rows, dx, dy)
        }
        Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
            let kind: i32 = if matches!(k.op, Op::LayerNorm { .. }) { 1 } else { 0 };
            let (w, bias) = (ins[1], *ins.get(2).unwrap_or(&ins[1]));
            let dw = dtype_code(k.inputs[1].dtype);
            let dbias = dtype_code(k.inputs.get(2).unwrap_or(&k.inputs[1]).dtype);
            let (rows, c, e) = (x0.rows() as u64, x0.last() as u64, *eps);
            kernel!(b, s, "row_ops", per_row(x0.rows()), x, w, bias, y, rows, c, e, kind, dx, dw, dbias, dy)
        }
        Op::Softmax => {
            let (rows, c, e, kind) = (x0.rows() as u64, x0.last() as u64, 0f32, 2i32);
            kernel!(b, s, "row_ops", per_row(x0.rows()), x, x, x, y, rows, c, e, kind, dx, dx, dx, dy)
        }
        Op::MatMul { trans_b } => matmul(b, s, (&k.inputs[0], &k.inputs[1], &k.output), *trans_b, x, ins[1], y),
        Op::TakeAlong => {
            let (c, kk, idx) = (x0.last() as u64, out.last() as u64, ins[1]);
            kernel!(b, s, "take_along", per_element(n), x, idx, y, n64, c, kk, dx, dy)
        }
        Op::Rope { style } => {
            let slots = (n / 2) as u64;
            let (h, d, half) = (x0.0[1] as u64, x0.0[2] as u64, k.inputs[1].shape.0[1] as u64);
            let (cs, sn, inter) = (ins[1], ins[2], (*style == RopeStyle::Interleaved) as i32);
            kernel!(b, s, "rope", per_element(n / 2), x, cs, sn, y, slots, h, d, half, inter, dx, dy)
        }
        Op::ScatterRows { accumulate } => {
            copy(b, s, k, x, y, layout(&[n], &[1], &[1])?, (0, 0), 0)?;
            let rows_n = k.inputs[2].shape.numel();
            let (rows, idx, n_rows) = (ins[2], ins[1], rows_n as u64);
            let (cols, base_rows, acc, dr) =
                (x0.0[1] as u64, x0.0[0] as u64, *accumulate as i32, dtype_code(k.inputs[2].dtype));
            kernel!(b, s, "scatter", per_element(rows_n), rows, idx, y, n_rows, cols, base_rows, acc, dr, dy)
        }
        Op::TopK { .. } | Op::ArgMax => {
            let kk = match k.op {
                Op::TopK { k } => k as u64,
                _ => 1,
            };
            let (rows, c) = (x0.rows() as u64, x0.last() as u64);
            kernel!(b, s, "topk", per_row(x0.rows()), x, y, rows, c, kk, dx)
        }
        Op::Attention { .. }
        | Op::RopeHeads { .. }
        | Op::AddRmsNorm { .. }
        | Op::Elementwise { .. }
        | Op::MatMulEpilogue { .. } => super::fused::launch(b, s, k, ins, y, None),
        Op::Moe { .. } | Op::QMoe { .. } => super::moe::launch(b, s, k, ins, y),
    }
}

/// Queues `y = a @ b` (`b` transposed when `trans_b`) for tensors of the given types, as
/// `Op::MatMul` defines it (f32 accumulation, batches broadcast).
pub(super) fn matmul(
    b: &CudaBackend,
    s: &mut State,
    types: (&TensorDesc, &TensorDesc, &TensorDesc),
    trans_b: bool,
    a: u64,
    bb: u64,
    y: u64,
) -> Result<()> {
    if super::gemv::launch(b, s, types, trans_b, a, bb, y)? {
        return Ok(());
    }
    if let Some(blas) = &b.blas {
        if super::blas::matmul(blas, types, trans_b, a, bb, y)? {
            return Ok(());
        }
    }
    let d = matmul_dims(&types.0.shape, &types.1.shape, trans_b)?;
    if d.batch > 65535 {
        return Err(Error::Backend(format!("cuda: matmul batch {} exceeds 65535", d.batch)));
    }
    let cfg = LaunchConfig {
        grid_dim: (d.n.div_ceil(16).max(1) as u32, d.m.div_ceil(16).max(1) as u32, d.batch.max(1) as u32),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    let (da, db, dy) = (dtype_code(types.0.dtype), dtype_code(types.1.dtype), dtype_code(types.2.dtype));
    let (m, nn, kk) = (d.m as u64, d.n as u64, d.k as u64);
    let (ag, ast, bg, bst) = (d.a_group as u64, d.a_stride as u64, d.b_group as u64, d.b_stride as u64);
    let tb = trans_b as i32;
    kernel!(b, s, "matmul", cfg, a, bb, y, m, nn, kk, ag, ast, bg, bst, tb, da, db, dy)
}

/// The tuned paged attention (`paged_attention_gqa*` in cuda/paged_attention.cu) for this op,
/// if it takes it: the new rows and both pools one 16-bit dtype, D = Dv of 64, 128 or 256, at
/// most 8 q heads per kv head, 16-byte aligned buffers. One block per (token, kv head).
fn paged_gqa(k: &Kernel, p: &crate::graph::PagedDims, bufs: &[u64; 4]) -> Option<(&'static str, LaunchConfig)> {
    let dt = k.inputs[1].dtype;
    let same = k.inputs[1..5].iter().all(|t| t.dtype == dt) && matches!(dt, DType::BF16 | DType::F16);
    let g = p.hq / p.hkv.max(1);
    if super::gemv::plain() || !same || p.d != p.dv || g > 8 || bufs.iter().any(|a| a % 16 != 0) {
        return None;
    }
    let (entry, lanes) = match p.d {
        64 => ("paged_attention_gqa8", 8),
        128 => ("paged_attention_gqa16", 16),
        256 => ("paged_attention_gqa32", 32),
        _ => return None,
    };
    if p.t == 0 || p.t > i32::MAX as usize || p.hkv > 65535 {
        return None;
    }
    let floats = g * p.d + (128 / lanes) * g * (p.d + 2);
    let cfg = LaunchConfig {
        grid_dim: (p.t as u32, p.hkv as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: (4 * floats) as u32,
    };
    Some((entry, cfg))
}
