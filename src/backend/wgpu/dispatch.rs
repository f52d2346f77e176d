//! Lowers one kernel to the compute dispatches that run it: which family and entry point,
//! which inputs are bound, the params block and the grid.

use super::program::program;
use crate::backend::Kernel;
use crate::graph::{matmul_dims, BinaryOp, Op, RopeStyle, UnaryOp};
use crate::{Error, Result};

/// One compute dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// Shader family (file stem).
    pub family: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Tensors bound as `a`, `b`, ...: indices into the kernel's inputs followed by its
    /// scratch tensors ([`scratch`]).
    pub inputs: Vec<usize>,
    /// Where the dispatch writes: None for the kernel's output, else an index as in `inputs`.
    pub output: Option<usize>,
    /// Also binds the kernel's side output (two-output kernels).
    pub side: bool,
    /// Params block (u32 words; f32 as bits).
    pub params: Vec<u32>,
    /// Workgroup grid.
    pub groups: [u32; 3],
}

pub(super) const MAX_RANK: usize = 6;
const MAX_GROUPS: u32 = 65535;
/// Matmuls with at most this many rows (decode steps) use the matvec kernel.
const MATVEC_MAX_ROWS: usize = 4;

pub(super) fn u(x: usize, what: &str) -> Result<u32> {
    u32::try_from(x).map_err(|_| Error::Backend(format!("wgpu: {what} = {x} exceeds 32-bit indexing")))
}

/// A 2-D grid of `n` workgroups (the shaders linearise it with `group_index`).
pub(super) fn grid(n: usize) -> Result<[u32; 3]> {
    let n = u(n.max(1), "workgroup count")?;
    let x = n.min(MAX_GROUPS);
    Ok([x, n.div_ceil(x), 1])
}

/// A grid with one invocation per element, 256 per workgroup.
pub(super) fn per_element(n: usize) -> Result<[u32; 3]> {
    grid(n.div_ceil(256))
}

fn one(
    family: &'static str,
    entry: &'static str,
    inputs: Vec<usize>,
    params: Vec<u32>,
    groups: [u32; 3],
) -> Vec<Dispatch> {
    vec![Dispatch { family, entry, inputs, output: None, side: false, params, groups }]
}

/// Dims and strides padded on the left to rank 6; strides are 0 on broadcast dims.
pub(super) fn padded(dims: &[usize], strides: &[usize]) -> Result<(Vec<u32>, Vec<u32>)> {
    if dims.len() > MAX_RANK {
        return Err(Error::Backend(format!("wgpu: rank {} exceeds {MAX_RANK}", dims.len())));
    }
    let pad = MAX_RANK - dims.len();
    let mut d = vec![1; pad];
    let mut s = vec![0; pad];
    for (x, st) in dims.iter().zip(strides) {
        d.push(u(*x, "dim")?);
        s.push(u(*st, "stride")?);
    }
    Ok((d, s))
}

/// A strided copy dispatch.
fn copy(
    k: &Kernel,
    input: usize,
    dims: &[usize],
    src: &[usize],
    dst: &[usize],
    offs: (usize, usize),
) -> Result<Dispatch> {
    let n: usize = dims.iter().product();
    let (d, s) = padded(dims, src)?;
    let (_, t) = padded(dims, dst)?;
    let mut p = vec![u(n, "elements")?, u(offs.0, "offset")?, u(offs.1, "offset")?];
    p.extend(d);
    p.extend(s);
    p.extend(t);
    let int = k.inputs[input].dtype.is_int() && k.output.dtype.is_int();
    Ok(Dispatch {
        family: "copy",
        entry: if int { "copy_int" } else { "copy" },
        inputs: vec![input],
        output: None,
        side: false,
        params: p,
        groups: per_element(n)?,
    })
}

/// A (batched) matmul, with an epilogue program over inputs 2.. when `epilogue` is given.
fn matmul(k: &Kernel, trans_b: bool, epilogue: Option<&[crate::graph::Inst]>) -> Result<Vec<Dispatch>> {
    let d = matmul_dims(&k.inputs[0].shape, &k.inputs[1].shape, trans_b)?;
    let mut p = vec![
        u(d.m, "M")?,
        u(d.n, "N")?,
        u(d.k, "K")?,
        u(d.batch, "batch")?,
        u(d.b_group, "group")?,
        trans_b as u32,
        u(d.b_stride, "stride")?,
        u(d.a_group, "group")?,
        u(d.a_stride, "stride")?,
    ];
    let mut family = "matmul";
    if let Some(code) = epilogue {
        // Program input 0 is the product; inputs 1.. are the kernel's inputs 2..
        let mut shapes = vec![None];
        shapes.extend(k.inputs[2..].iter().map(|t| Some(&t.shape)));
        program(&mut p, code, &k.output.shape, &shapes)?;
        family = match k.inputs.len() {
            2 => "matmul_ep0",
            3 => "matmul_ep1",
            4 => "matmul_ep2",
            n => return Err(Error::Backend(format!("wgpu: matmul epilogue with {} extra inputs", n - 2))),
        };
    }
    let inputs: Vec<usize> = (0..k.inputs.len()).collect();
    if d.m <= MATVEC_MAX_ROWS {
        let rows = d.batch * d.m;
        if rows > MAX_GROUPS as usize {
            return Err(Error::Backend(format!("wgpu: matmul batch x rows {rows} exceeds {MAX_GROUPS}")));
        }
        let [x, y, _] = grid(d.n.div_ceil(8))?;
        Ok(one(family, "matvec", inputs, p, [x, y, rows.max(1) as u32]))
    } else {
        if d.batch > MAX_GROUPS as usize {
            return Err(Error::Backend(format!("wgpu: matmul batch {} exceeds {MAX_GROUPS}", d.batch)));
        }
        let grid = [u(d.n.div_ceil(64), "N")?, u(d.m.div_ceil(64), "M")?, d.batch.max(1) as u32];
        Ok(one(family, "matmul", inputs, p, grid))
    }
}

/// Device tensors a kernel needs besides its inputs and output while it runs (the fused MoE
/// op's routing plan and expert activations); the backend lends them from its buffer pool.
pub fn scratch(k: &Kernel) -> Result<Vec<crate::graph::TensorDesc>> {
    match super::moe::Stacks::of(&k.op) {
        Some((top_k, st)) => super::moe::scratch(k, top_k, st),
        None => Ok(vec![]),
    }
}

/// The dispatches that compute `k`.
pub fn lower(k: &Kernel) -> Result<Vec<Dispatch>> {
    lower_with(k, false)
}

/// The dispatches that compute `k`, writing its side output too when `side`.
pub fn lower_with(k: &Kernel, side: bool) -> Result<Vec<Dispatch>> {
    let out = &k.output.shape;
    let n = out.numel();
    let n32 = u(n, "elements")?;
    let x0 = &k.inputs.first().map(|d| d.shape.clone()).unwrap_or_default();
    Ok(match &k.op {
        Op::Input { .. } | Op::Reshape(_) => vec![],
        Op::QMatMul { format, group } => super::quant::lower(k, *format, *group)?,
        Op::PagedAttention { scale, block_size } => {
            let ins: Vec<&crate::graph::TensorDesc> = k.inputs.iter().collect();
            let p = crate::graph::paged_dims(*block_size, &ins)?;
            if p.d > 256 || p.dv > 256 {
                return Err(Error::Backend(format!("wgpu: paged attention heads of {} / {} exceed 256", p.d, p.dv)));
            }
            let params = [p.t, p.hq, p.hkv, p.d, p.dv, *block_size, crate::graph::PAGED_META + p.max_blocks]
                .iter()
                .map(|&x| u(x, "paged attention size"))
                .chain([Ok(scale.to_bits())])
                .collect::<Result<Vec<u32>>>()?;
            one("paged_attention", "paged_attention", vec![0, 1, 2, 3, 4, 5], params, grid(p.t * p.hq)?)
        }
        Op::WriteRows { rows } => {
            let c = k.inputs[0].shape.numel() / k.inputs[0].shape.0[0].max(1);
            let params = vec![u(k.inputs[0].shape.numel(), "elements")?, u(c, "columns")?, u(*rows, "rows")?];
            one("write_rows", "write_rows", vec![0, 1], params, per_element(k.inputs[0].shape.numel())?)
        }
        Op::Random { seed, offset, scale, .. } => one(
            "random",
            "random",
            vec![],
            vec![n32, *seed as u32, (*seed >> 32) as u32, offset.to_bits(), scale.to_bits()],
            per_element(n)?,
        ),
        Op::Gather => one(
            "gather",
            "gather_rows",
            vec![0, 1],
            vec![n32, u(x0.0[1], "cols")?, u(x0.0[0], "rows")?],
            per_element(n)?,
        ),
        Op::TakeAlong => one(
            "gather",
            "take_along",
            vec![0, 1],
            vec![n32, u(x0.last(), "cols")?, u(out.last(), "k")?],
            per_element(n)?,
        ),
        Op::MatMul { trans_b } => matmul(k, *trans_b, None)?,
        Op::MatMulEpilogue { trans_b, code, .. } => matmul(k, *trans_b, Some(code))?,
        Op::Binary(op) => {
            let entry = match op {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
            };
            let (d, sa) = padded(&out.0, &x0.broadcast_strides(out))?;
            let (_, sb) = padded(&out.0, &k.inputs[1].shape.broadcast_strides(out))?;
            let mut p = vec![n32, 0];
            p.extend(d);
            p.extend(sa);
            p.extend(sb);
            one("binary", entry, vec![0, 1], p, per_element(n)?)
        }
        Op::SwiGlu => one("binary", "swiglu", vec![0, 1], vec![n32], per_element(n)?),
        Op::Unary(op) => {
            let entry = match op {
                UnaryOp::Silu => "silu",
                UnaryOp::Gelu => "gelu",
                UnaryOp::GeluErf => "gelu_erf",
                UnaryOp::Exp => "exp_op",
                UnaryOp::Neg => "neg",
            };
            one("unary", entry, vec![0], vec![n32], per_element(n)?)
        }
        Op::Scale(f) => one("unary", "scale", vec![0], vec![n32, f.to_bits()], per_element(n)?),
        Op::Cast(to) => {
            let entry = if k.inputs[0].dtype.is_int() && to.is_int() { "cast_int" } else { "cast_float" };
            one("unary", entry, vec![0], vec![n32], per_element(n)?)
        }
        Op::RmsNorm { eps } => one(
            "rms_norm",
            "rms_norm",
            vec![0, 1],
            vec![u(x0.rows(), "rows")?, u(x0.last(), "C")?, eps.to_bits()],
            grid(x0.rows())?,
        ),
        Op::RopeHeads { style, norm } => {
            let (t, h, d) = (x0.0[0], x0.0[1], x0.0[2]);
            let p = vec![
                u(t * h, "rows")?,
                u(h, "H")?,
                u(d, "D")?,
                u(k.inputs[1].shape.0[1], "R/2")?,
                (*style == RopeStyle::Interleaved) as u32,
                norm.unwrap_or(0.0).to_bits(),
                u(t, "T")?,
            ];
            match norm {
                Some(_) => one("norm_rope_heads", "rope_heads", vec![0, 1, 2, 3], p, grid(t * h)?),
                None => one("rope_heads", "rope_heads", vec![0, 1, 2], p, grid(t * h)?),
            }
        }
        Op::AddRmsNorm { eps } => vec![Dispatch {
            family: if side { "add_rms_norm_side" } else { "add_rms_norm" },
            entry: "rms_norm",
            inputs: vec![0, 1, 2],
            output: None,
            side,
            params: vec![u(x0.rows(), "rows")?, u(x0.last(), "C")?, eps.to_bits()],
            groups: grid(x0.rows())?,
        }],
        Op::LayerNorm { eps } => one(
            "layer_norm",
            "layer_norm",
            vec![0, 1, 2],
            vec![u(x0.rows(), "rows")?, u(x0.last(), "C")?, eps.to_bits()],
            grid(x0.rows())?,
        ),
        Op::Softmax => {
            one("softmax", "softmax", vec![0], vec![u(x0.rows(), "rows")?, u(x0.last(), "C")?], grid(x0.rows())?)
        }
        Op::TopK { k: kk } => one(
            "topk",
            "top_k",
            vec![0],
            vec![u(x0.rows(), "rows")?, u(x0.last(), "C")?, u(*kk, "k")?],
            grid(x0.rows())?,
        ),
        Op::ArgMax => {
            one("topk", "top_k", vec![0], vec![u(x0.rows(), "rows")?, u(x0.last(), "C")?, 1], grid(x0.rows())?)
        }
        Op::Rope { style } => {
            let (h, d) = (x0.0[1], x0.0[2]);
            let slots = n / 2;
            let half = k.inputs[1].shape.0[1];
            let p = vec![
                u(slots, "slots")?,
                u(h, "H")?,
                u(d, "D")?,
                u(half, "R/2")?,
                (*style == RopeStyle::Interleaved) as u32,
            ];
            one("rope", "rope", vec![0, 1, 2], p, per_element(slots)?)
        }
        Op::Permute(perm) => {
            let st = x0.strides();
            let src: Vec<usize> = perm.iter().map(|&a| st[a]).collect();
            vec![copy(k, 0, &out.0, &src, &out.strides(), (0, 0))?]
        }
        Op::Slice { axis, start, .. } => {
            let st = x0.strides();
            vec![copy(k, 0, &out.0, &st, &out.strides(), (start * st[*axis], 0))?]
        }
        Op::Concat { axis } => {
            let ost = out.strides();
            let mut at = 0;
            let mut v = Vec::new();
            for (i, d) in k.inputs.iter().enumerate() {
                v.push(copy(k, i, &d.shape.0, &d.shape.strides(), &ost, (0, at * ost[*axis]))?);
                at += d.shape.0[*axis];
            }
            v
        }
        Op::Attention { scale, causal, tokens_first } => {
            let (sq, sk, sv) = (&x0.0, &k.inputs[1].shape.0, &k.inputs[2].shape.0);
            // One workgroup per head and block of 4 queries (R in the shader).
            let rows = sq[0] * sq[1].div_ceil(4);
            let p = vec![
                u(sq[0], "Hq")?,
                u(sq[1], "T")?,
                u(sk[1], "S")?,
                u(sq[2], "D")?,
                u(sv[2], "Dv")?,
                u(sq[0] / sk[0], "group")?,
                *causal as u32,
                scale.to_bits(),
                *tokens_first as u32,
            ];
            let (family, inputs) =
                if k.inputs.len() == 4 { ("attention_masked", vec![0, 1, 2, 3]) } else { ("attention", vec![0, 1, 2]) };
            one(family, "attention", inputs, p, grid(rows)?)
        }
        Op::Moe { .. } | Op::QMoe { .. } => {
            let (top_k, st) = super::moe::Stacks::of(&k.op).unwrap_or_else(|| unreachable!("a fused moe"));
            super::moe::lower(k, top_k, st)?
        }
        Op::Elementwise { code, .. } => {
            let mut p = vec![n32];
            let shapes: Vec<Option<&crate::graph::Shape>> = k.inputs.iter().map(|t| Some(&t.shape)).collect();
            program(&mut p, code, out, &shapes)?;
            let family =
                ["elementwise1", "elementwise2", "elementwise3", "elementwise"][k.inputs.len().clamp(1, 4) - 1];
            one(family, "elementwise", (0..k.inputs.len()).collect(), p, per_element(n)?)
        }
        Op::ScatterRows { accumulate } => {
            let rows_n = k.inputs[2].shape.numel();
            let p = vec![n32, u(rows_n, "elements")?, u(x0.0[1], "C")?, u(x0.0[0], "R")?, *accumulate as u32];
            let mut v = one("scatter", "scatter_copy", vec![0, 1, 2], p.clone(), per_element(n)?);
            v.extend(one("scatter", "scatter_rows", vec![0, 1, 2], p, per_element(rows_n)?));
            v
        }
    })
}
