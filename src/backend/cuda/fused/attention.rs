//! Fused attention on CUDA (`cuda/attention.cu`): flash style, the rows of a kv head's query
//! group in one block, keys split across blocks (and merged by `attention_combine`) when
//! there are too few blocks to fill the GPU, as in decoding.

use super::super::launch::{dtype_code, per_element};
use super::super::{driver_err, CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{Op, TensorDesc};
use crate::{Error, Result};
use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

/// Rows (query, q head) per warp, keys per tile (`ATT_R`, `ATT_BK` in the kernel).
const ROWS_PER_WARP: usize = 2;
const KEY_TILE: usize = 32;
/// Largest head size: a lane holds 8 output columns; K and query tiles fit 48 KB of shared memory.
const MAX_HEAD: usize = 256;
/// Blocks that keep an H100's 132 SMs busy; fewer and the keys are split.
const TARGET_BLOCKS: usize = 264;

/// `AttnParams` of `cuda/attention.cu`.
#[repr(C)]
#[derive(Clone, Copy)]
struct AttnParams {
    hq: u64,
    t: u64,
    s: u64,
    d: u64,
    dv: u64,
    group: u64,
    scale: f32,
    causal: i32,
    tokens_first: i32,
    splits: i32,
    tiles_per_split: i32,
    has_mask: i32,
    dq: i32,
    dk: i32,
    dvt: i32,
    dy: i32,
}

const _: () = assert!(std::mem::size_of::<AttnParams>() == 88);

// SAFETY: plain old data with the C layout the kernel declares (sizes checked on both sides).
unsafe impl DeviceRepr for AttnParams {}

/// Whether the kernel handles these operands (head sizes up to 256, kv heads within a grid's y).
pub(super) fn fits(inputs: &[&TensorDesc]) -> bool {
    let (q, k, v) = (&inputs[0].shape, &inputs[1].shape, &inputs[2].shape);
    q.rank() == 3
        && k.rank() == 3
        && v.rank() == 3
        && (1..=MAX_HEAD).contains(&q.0[2])
        && (1..=MAX_HEAD).contains(&v.0[2])
        && (1..=65535).contains(&k.0[0])
}

pub(super) fn launch(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64) -> Result<()> {
    let Op::Attention { scale, causal, tokens_first } = k.op else { unreachable!("called for attention") };
    let (sq, sk, sv) = (&k.inputs[0].shape.0, &k.inputs[1].shape.0, &k.inputs[2].shape.0);
    let (hq, t, sl, d, dv, hkv) = (sq[0], sq[1], sk[1], sq[2], sv[2], sk[0]);
    if k.output.shape.numel() == 0 {
        return Ok(());
    }
    if d > MAX_HEAD || dv > MAX_HEAD || hkv > 65535 {
        return Err(Error::Backend(format!("cuda: attention with D {d}, Dv {dv}, {hkv} kv heads does not fit")));
    }
    let rows = (hq / hkv) * t;
    let warps = rows.div_ceil(ROWS_PER_WARP).clamp(1, 4);
    let row_tiles = rows.div_ceil(warps * ROWS_PER_WARP);
    let tiles = sl.div_ceil(KEY_TILE).max(1);
    let blocks = row_tiles * hkv;
    let splits = if blocks >= TARGET_BLOCKS { 1 } else { TARGET_BLOCKS.div_ceil(blocks).min((tiles / 4).max(1)) };
    let tiles_per_split = tiles.div_ceil(splits);
    let splits = tiles.div_ceil(tiles_per_split);
    let ldk = if d % 2 == 1 { d } else { d + 1 };
    let shared = 4 * (KEY_TILE * ldk.max(dv) + warps * ROWS_PER_WARP * d);
    let p = AttnParams {
        hq: hq as u64,
        t: t as u64,
        s: sl as u64,
        d: d as u64,
        dv: dv as u64,
        group: (hq / hkv) as u64,
        scale,
        causal: causal as i32,
        tokens_first: tokens_first as i32,
        splits: splits as i32,
        tiles_per_split: tiles_per_split as i32,
        has_mask: (ins.len() == 4) as i32,
        dq: dtype_code(k.inputs[0].dtype),
        dk: dtype_code(k.inputs[1].dtype),
        dvt: dtype_code(k.inputs[2].dtype),
        dy: dtype_code(k.output.dtype),
    };
    let cfg = LaunchConfig {
        grid_dim: (row_tiles as u32, hkv as u32, splits as u32),
        block_dim: (32 * warps as u32, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    if row_tiles > i32::MAX as usize {
        return Err(Error::Backend(format!("cuda: attention over {rows} rows per kv head exceeds the grid")));
    }
    let (q, kk, v, mask) = (ins[0], ins[1], ins[2], ins.get(3).copied().unwrap_or(0));
    if splits == 1 {
        let part = 0u64;
        return kernel!(b, s, "attention", cfg, q, kk, v, mask, y, part, p);
    }
    // SAFETY: every block writes its rows of its split before attention_combine reads them;
    // dropping the slice frees it in stream order, after both kernels.
    let scratch = unsafe { b.stream.alloc::<f32>(splits * hq * t * (dv + 2)) }
        .map_err(driver_err("allocating attention's partial rows"))?;
    let (part, _sync) = scratch.device_ptr(&b.stream);
    kernel!(b, s, "attention", cfg, q, kk, v, mask, y, part, p)?;
    kernel!(b, s, "attention_combine", per_element(hq * t * dv), part, y, p)
}
