//! Fused attention on CUDA (`cuda/attention.cu`): flash style, the rows of a kv head's query
//! group in one block, keys split across blocks (and merged by `attention_combine`) when
//! there are too few blocks to fill the GPU, as in decoding. With 16-bit operands and at least
//! a warp tile of rows (prefill, the vision tower) the tensor-core kernel runs instead.

use super::super::launch::{dtype_code, per_element};
use super::super::{driver_err, CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{DType, Op, TensorDesc};
use crate::{Error, Result};
use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

/// Rows (query, q head) per warp, keys per tile (`ATT_R`, `ATT_BK` in the kernel).
const ROWS_PER_WARP: usize = 2;
const KEY_TILE: usize = 32;
/// Largest head size: a lane holds 8 output columns; K and query tiles fit 48 KB of shared memory.
const MAX_HEAD: usize = 256;
/// Rows and keys per block of the tensor-core kernel (`attention_tc`: 4 warps x 16 rows, FA_BN).
const TC_ROWS: usize = 64;
const TC_KEY_TILE: usize = 64;
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
    let (sq, sk, sv) = (&k.inputs[0].shape.0, &k.inputs[1].shape.0, &k.inputs[2].shape.0);
    let (hq, t, sl, d, dv, hkv) = (sq[0], sq[1], sk[1], sq[2], sv[2], sk[0]);
    if k.output.shape.numel() == 0 {
        return Ok(());
    }
    if d > MAX_HEAD || dv > MAX_HEAD || hkv > 65535 {
        return Err(Error::Backend(format!("cuda: attention with D {d}, Dv {dv}, {hkv} kv heads does not fit")));
    }
    let rows = (hq / hkv) * t;
    if let Some(entry) = tensor_core_entry(k, ins, rows) {
        let row_tiles = rows.div_ceil(TC_ROWS);
        let (splits, tiles_per_split) = key_splits(row_tiles * hkv, sl, TC_KEY_TILE);
        let cfg = LaunchConfig {
            grid_dim: (grid_x(row_tiles, rows)?, hkv as u32, splits as u32),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        return run(b, s, ins, y, (entry, cfg), params(k, ins, splits, tiles_per_split));
    }
    let warps = rows.div_ceil(ROWS_PER_WARP).clamp(1, 4);
    let row_tiles = rows.div_ceil(warps * ROWS_PER_WARP);
    let (splits, tiles_per_split) = key_splits(row_tiles * hkv, sl, KEY_TILE);
    let ldk = if d % 2 == 1 { d } else { d + 1 };
    let shared = 4 * (KEY_TILE * ldk.max(dv) + warps * ROWS_PER_WARP * d);
    let cfg = LaunchConfig {
        grid_dim: (grid_x(row_tiles, rows)?, hkv as u32, splits as u32),
        block_dim: (32 * warps as u32, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    run(b, s, ins, y, ("attention", cfg), params(k, ins, splits, tiles_per_split))
}

fn grid_x(row_tiles: usize, rows: usize) -> Result<u32> {
    u32::try_from(row_tiles)
        .ok()
        .filter(|&x| x <= i32::MAX as u32)
        .ok_or_else(|| Error::Backend(format!("cuda: attention over {rows} rows per kv head exceeds the grid")))
}

fn params(k: &Kernel, ins: &[u64], splits: usize, tiles_per_split: usize) -> AttnParams {
    let Op::Attention { scale, causal, tokens_first } = k.op else { unreachable!("called for attention") };
    let (sq, sk, sv) = (&k.inputs[0].shape.0, &k.inputs[1].shape.0, &k.inputs[2].shape.0);
    AttnParams {
        hq: sq[0] as u64,
        t: sq[1] as u64,
        s: sk[1] as u64,
        d: sq[2] as u64,
        dv: sv[2] as u64,
        group: (sq[0] / sk[0]) as u64,
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
    }
}

/// The tensor-core kernel for this attention, if it takes it: q, k, v all bf16 or all f16,
/// head sizes multiples of 8 up to 128 (padded to the kernel's 64, 80 or 128), operands
/// 16-byte aligned, at least one warp tile of rows per kv head, keys countable in 32 bits.
fn tensor_core_entry(k: &Kernel, ins: &[u64], rows: usize) -> Option<&'static str> {
    if super::super::gemv::plain() || rows < 16 || ins[..3].iter().any(|p| p % 16 != 0) {
        return None;
    }
    let (q, kk, v) = (&k.inputs[0], &k.inputs[1], &k.inputs[2]);
    let (d, dv, keys) = (q.shape.0[2], v.shape.0[2], kk.shape.0[1]);
    if q.dtype != kk.dtype || q.dtype != v.dtype || d % 8 != 0 || dv % 8 != 0 || u32::try_from(keys).is_err() {
        return None;
    }
    let padded = [64, 80, 128].into_iter().find(|&p| d.max(dv) <= p)?;
    Some(match (q.dtype, padded) {
        (DType::BF16, 64) => "attention_tc_bf16_64",
        (DType::BF16, 80) => "attention_tc_bf16_80",
        (DType::BF16, _) => "attention_tc_bf16_128",
        (DType::F16, 64) => "attention_tc_f16_64",
        (DType::F16, 80) => "attention_tc_f16_80",
        (DType::F16, _) => "attention_tc_f16_128",
        _ => return None,
    })
}

/// Splits of the keys (in tiles of `tile`) that give `blocks` blocks about `TARGET_BLOCKS`:
/// (splits, tiles per split).
fn key_splits(blocks: usize, keys: usize, tile: usize) -> (usize, usize) {
    let tiles = keys.div_ceil(tile).max(1);
    let splits = if blocks >= TARGET_BLOCKS { 1 } else { TARGET_BLOCKS.div_ceil(blocks).min((tiles / 4).max(1)) };
    let tiles_per_split = tiles.div_ceil(splits);
    (tiles.div_ceil(tiles_per_split), tiles_per_split)
}

/// Queues `entry` (one of `cuda/attention.cu`'s kernels) and, with key splits, the combine.
fn run(
    b: &CudaBackend,
    s: &mut State,
    ins: &[u64],
    y: u64,
    (entry, cfg): (&'static str, LaunchConfig),
    p: AttnParams,
) -> Result<()> {
    let (hq, t, dv) = (p.hq as usize, p.t as usize, p.dv as usize);
    let (q, kk, v, mask) = (ins[0], ins[1], ins[2], ins.get(3).copied().unwrap_or(0));
    let func = b.function(s, entry)?;
    let launch = |part: u64| {
        let mut lb = b.stream.launch_builder(&func);
        lb.arg(&q).arg(&kk).arg(&v).arg(&mask).arg(&y).arg(&part).arg(&p);
        // SAFETY: the arguments match the kernel's parameters (AttnParams's size is checked on
        // both sides); the buffers were checked against the kernel's tensor types.
        unsafe { lb.launch(cfg) }.map(|_| ()).map_err(driver_err("launching attention"))
    };
    if p.splits == 1 {
        return launch(0);
    }
    // SAFETY: every block writes its rows of its split before attention_combine reads them;
    // dropping the slice frees it in stream order, after both kernels.
    let scratch = unsafe { b.stream.alloc::<f32>(p.splits as usize * hq * t * (dv + 2)) }
        .map_err(driver_err("allocating attention's partial rows"))?;
    let (part, _sync) = scratch.device_ptr(&b.stream);
    launch(part)?;
    kernel!(b, s, "attention_combine", per_element(hq * t * dv), part, y, p)
}
