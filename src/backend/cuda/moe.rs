//! The fused mixture-of-experts ops (`Op::Moe`, and `Op::QMoe` through `cuda/qmoe.cu`) on CUDA, lowered as on wgpu with no host
//! synchronisation: router logits (the plain matmul kernel), routing (`cuda/moe_route.cu`), a
//! counting sort of the (token, slot) pairs by expert into tiles of `BM` rows, the grouped
//! gate_up GEMM with SwiGLU in its epilogue, the grouped down GEMM and the weighted combine
//! (`cuda/moe.cu`). The GEMM grids are sized for the most tiles any routing can need; unused
//! tiles exit at once, so the work follows the tokens routed to each expert. With few pairs per
//! expert (decode) tiles would be mostly padding: each pair is then its own matvec row, no sort.

use super::launch::{dtype_code, matmul, per_element};
use super::{driver_err, CudaBackend, State};
use crate::backend::Kernel;
use crate::graph::{moe_dims, qmoe_dims, DType, MoeDims, Op, TensorDesc};
use crate::quant::QFormat;
use crate::{Error, Result};
use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};

/// Rows per tile of the grouped GEMMs (`BM` in cuda/moe.cu, `TC_BM` in cuda/moe_tc.cu).
const BM: usize = 16;
const TC_BM: usize = 64;
/// Output columns per block of the tensor-core grouped GEMMs (`TC_BN`).
const TC_BN: usize = 64;
/// Output columns per block of the grouped GEMMs (`BN`).
const BN: usize = 64;
/// Most experts `moe_align` handles (its shared arrays).
const MAX_EXPERTS: usize = 512;
/// Most experts per token `moe_route` handles (its shared arrays).
const MAX_TOP_K: usize = 64;
/// Tokens per block of `moe_route` (one warp each).
const ROUTE_WARPS: usize = 8;
/// Pairs per expert (on average) up to which each pair runs as a matvec row.
const VEC_PAIRS_PER_EXPERT: usize = 4;
const MAX_GRID_YZ: usize = 65535;

/// Device scratch of the op: one allocation, reused across launches and replaced by a larger
/// one when a launch needs more. The stream is in order, so a launch may reuse it while the
/// previous one is still queued, and a replaced allocation is freed in stream order.
#[derive(Default)]
pub(super) struct Scratch {
    buf: Option<CudaSlice<u8>>,
}

impl Scratch {
    /// Device address of at least `bytes` bytes of scratch.
    fn base(&mut self, b: &CudaBackend, bytes: usize) -> Result<u64> {
        let buf = match self.buf.take() {
            Some(buf) if buf.len() >= bytes => buf,
            _ => b.stream.alloc_zeros::<u8>(bytes.max(256)).map_err(driver_err("allocating MoE scratch"))?,
        };
        let p = buf.device_ptr(&b.stream).0;
        self.buf = Some(buf);
        Ok(p)
    }
}

/// How one `Op::Moe` runs: its sizes, the number of (token, slot) pairs and whether the
/// few-pairs (matvec) path is taken. (The most tiles any routing can need, `MT`, follows from
/// the tile height the launch picks.)
struct Plan {
    d: MoeDims,
    trans_b: bool,
    /// Quantized experts (`Op::QMoe`): format and group.
    quant: Option<(QFormat, usize)>,
    pairs: usize,
    vec: bool,
}

impl Plan {
    fn new(op: &Op, inputs: &[&TensorDesc]) -> Option<Plan> {
        let (d, trans_b, quant) = match *op {
            Op::Moe { top_k, trans_b } if inputs.len() == 4 => (moe_dims(top_k, trans_b, inputs).ok()?, trans_b, None),
            Op::QMoe { top_k, format, group } if inputs.len() == 6 + 2 * format.has_global() as usize => {
                (qmoe_dims(top_k, format, group, inputs).ok()?, true, Some((format, group)))
            }
            _ => return None,
        };
        let pairs = d.t * d.k;
        // Sum over experts of ceil(count / BM) <= pairs / BM + E, and no tile is empty.
        let mt = (pairs.div_ceil(BM) + d.e).min(pairs);
        let vec = pairs <= VEC_PAIRS_PER_EXPERT * d.e;
        let small = |n: usize| n <= i32::MAX as usize;
        let fits = d.e <= MAX_EXPERTS
            && d.k <= MAX_TOP_K
            && small(2 * pairs)
            && d.t.div_ceil(16) <= MAX_GRID_YZ // the router matmul's grid y
            && small(d.h.max(d.i))
            && small(1 + mt + mt * BM)
            && if vec { d.h.max(d.i).div_ceil(8) <= MAX_GRID_YZ } else { d.h.max(d.i).div_ceil(BN) <= MAX_GRID_YZ };
        fits.then_some(Plan { d, trans_b, quant, pairs, vec })
    }
}

/// Whether `Op::Moe` / `Op::QMoe` has a CUDA kernel for these input types.
pub(super) fn supports(op: &Op, inputs: &[&TensorDesc]) -> bool {
    Plan::new(op, inputs).is_some()
}

/// Byte offset of a scratch region of `bytes` bytes, 256-byte aligned.
fn region(end: &mut usize, bytes: usize) -> u64 {
    let at = *end;
    *end += bytes.div_ceil(256) * 256;
    at as u64
}

/// A one-dimensional grid of `blocks` blocks of `threads`, folded into y past 65535.
fn grid(blocks: usize, threads: u32) -> LaunchConfig {
    let blocks = blocks.max(1);
    let x = blocks.min(MAX_GRID_YZ);
    LaunchConfig { grid_dim: (x as u32, blocks.div_ceil(x) as u32, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// Queues the MoE op `k` reading `ins` (x, router, gate_up, down; or x, router, gate_up codes
/// and scales, down codes and scales) and writing `y`.
pub(super) fn launch(b: &CudaBackend, s: &mut State, k: &Kernel, ins: &[u64], y: u64) -> Result<()> {
    let inputs: Vec<&TensorDesc> = k.inputs.iter().collect();
    let plan = Plan::new(&k.op, &inputs).ok_or_else(|| {
        let shapes: Vec<String> = inputs.iter().map(|d| format!("{:?} {}", d.dtype, d.shape)).collect();
        Error::Backend(format!("cuda: no fused moe kernel for {}", shapes.join(", ")))
    })?;
    let Plan { d, trans_b, quant, pairs, vec } = plan;
    if d.t == 0 {
        return Ok(());
    }
    let dt = k.inputs[0].dtype;
    let size = dt.size();
    let (x, router, gate_up, down) = (ins[0], ins[1], ins[2], ins[3]);
    let base = !super::gemv::plain() && (d.h | d.i) % 8 == 0;
    let tuned = quant.is_none() && base && [gate_up, down].iter().all(|p| p.is_multiple_of(16));
    let sixteen = |t: &TensorDesc| matches!(t.dtype, DType::BF16 | DType::F16);
    // Decode: 16-byte weight loads where the experts are stored [E, K, N] in 16 bits.
    let vec16 = vec && tuned && !trans_b && sixteen(&k.inputs[2]) && sixteen(&k.inputs[3]);
    // Prefill: tensor cores where x is 16-bit (16-byte aligned) and both stacks are in x's dtype,
    // or quantized (their tiles decoded to x's dtype).
    let dense_tc = tuned && k.inputs[2].dtype == dt && k.inputs[3].dtype == dt;
    let tc = !vec
        && x.is_multiple_of(16)
        && sixteen(&k.inputs[0])
        && k.output.dtype == dt
        && (dense_tc || (quant.is_some() && base));
    let bm = if tc { TC_BM } else { BM };
    let mt = (pairs.div_ceil(bm) + d.e).min(pairs);
    let act_rows = if vec { pairs } else { mt * bm };
    let mut end = 0;
    let o_logits = region(&mut end, d.t * d.e * size);
    let o_route = region(&mut end, 2 * pairs * 4);
    let o_plan = region(&mut end, if vec { 4 } else { (1 + mt + mt * bm) * 4 });
    let o_act = region(&mut end, act_rows * d.i * size);
    let o_y = region(&mut end, pairs * d.h * size);
    let base = s.moe.base(b, end)?;
    let (logits, route, tiles, act, ys) = (base + o_logits, base + o_route, base + o_plan, base + o_act, base + o_y);

    // Logits rounded to x's dtype, as the oracle rounds them.
    let logits_desc = TensorDesc::new(dt, [d.t, d.e]);
    matmul(b, s, (&k.inputs[0], &k.inputs[1], &logits_desc), true, x, router, logits)?;

    let (tokens, e, top) = (d.t as u64, d.e as u32, d.k as u32);
    let (h, i, trans) = (d.h as u32, d.i as u32, trans_b as i32);
    let (dx, dgu, ddn, dtc, dout) = (
        dtype_code(dt),
        dtype_code(k.inputs[2].dtype),
        dtype_code(k.inputs[3].dtype),
        dtype_code(dt),
        dtype_code(k.output.dtype),
    );
    let route_cfg = grid(d.t.div_ceil(ROUTE_WARPS), 32 * ROUTE_WARPS as u32);
    kernel!(b, s, "moe_route", route_cfg, logits, route, tokens, e, top, dtc)?;

    if let Some((format, group)) = quant {
        // NVFP4's global scales per expert (inputs 6 and 7); null pointers for the other formats.
        let global = |i: usize| ins.get(i).copied().unwrap_or(0);
        let stacks = [ins[2], ins[3], global(6), ins[4], ins[5], global(7)];
        let shape = (
            pairs,
            mt,
            if vec {
                Path::Vec
            } else if tc {
                Path::TensorCores
            } else {
                Path::Tiles
            },
        );
        launch_quantized(b, s, (x, act, ys), stacks, (route, tiles), &d, shape, (format, group), dt)?;
    } else if vec16 {
        // Columns per block: the widest (8 per thread, CW threads across) that still gives
        // every SM two blocks.
        let cfg = |n: usize| {
            let cw = [32usize, 16, 8, 4].into_iter().find(|cw| n.div_ceil(cw * 8) * pairs >= 2 * b.sms).unwrap_or(4);
            let grid_dim = (n.div_ceil(cw * 8) as u32, pairs as u32, 1);
            (LaunchConfig { grid_dim, block_dim: (256, 1, 1), shared_mem_bytes: 0 }, cw as u32)
        };
        let ((gu_cfg, cw_gu), (dn_cfg, cw_dn)) = (cfg(d.i), cfg(d.h));
        kernel!(b, s, "moe_gate_up_vec16", gu_cfg, x, gate_up, route, act, h, i, top, e, cw_gu, dx, dgu, dtc)?;
        kernel!(b, s, "moe_down_vec16", dn_cfg, act, down, route, ys, i, h, top, e, cw_dn, dtc, ddn, dtc)?;
    } else if vec {
        let cfg = |n: usize| {
            let cols = if trans_b { 8 } else { 32 };
            let grid_dim = (n.div_ceil(cols) as u32, pairs as u32, 1);
            LaunchConfig { grid_dim, block_dim: (256, 1, 1), shared_mem_bytes: 0 }
        };
        kernel!(b, s, "moe_gate_up_vec", cfg(d.i), x, gate_up, route, act, h, i, top, e, trans, dx, dgu, dtc)?;
        kernel!(b, s, "moe_down_vec", cfg(d.h), act, down, route, ys, i, h, top, e, trans, dtc, ddn, dtc)?;
    } else {
        let (n_pairs, mt32, bm32) = (pairs as u32, mt as u32, bm as u32);
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        kernel!(b, s, "moe_align", one, route, tiles, n_pairs, e, mt32, bm32)?;
        // Tiles past the routing's count exit at once; columns in blocks of BN (TC_BN).
        let (bn, threads) = if tc { (TC_BN, (128, 1, 1)) } else { (BN, (16, 16, 1)) };
        let cfg = |n: usize| LaunchConfig {
            grid_dim: (mt as u32, n.div_ceil(bn) as u32, 1),
            block_dim: threads,
            shared_mem_bytes: 0,
        };
        if tc {
            let (gu, dn) = tc_entries(dt, trans_b);
            launch_tc(b, s, gu, cfg(d.i), &[x, gate_up, tiles, act], &[h, i, top, mt32], None)?;
            launch_tc(b, s, dn, cfg(d.h), &[act, down, tiles, ys], &[i, h, top, mt32], None)?;
        } else {
            kernel!(b, s, "moe_gate_up", cfg(d.i), x, gate_up, tiles, act, h, i, top, mt32, trans, dx, dgu, dtc)?;
            kernel!(b, s, "moe_down", cfg(d.h), act, down, tiles, ys, i, h, top, mt32, trans, dtc, ddn, dtc)?;
        }
    }

    let (total, pairs64) = ((d.t * d.h) as u64, pairs as u64);
    kernel!(b, s, "moe_combine", per_element(d.t * d.h), ys, route, y, total, h, top, pairs64, e, dtc, dout)
}

/// Which kernels run a quantized MoE's expert GEMMs.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// Decode: a warp per output column of a routed pair (`cuda/qmoe.cu`).
    Vec,
    /// Prefill, 16-bit x: tensor-core tiles of TC_BM rows (`cuda/moe_tc.cu`).
    TensorCores,
    /// Prefill otherwise: f32 tiles of BM rows (`cuda/moe.cu`).
    Tiles,
}

/// Queues the expert GEMMs over quantized stacks (`cuda/qmoe.cu`, `cuda/moe_tc.cu`,
/// `cuda/moe.cu`): `stacks` are gate_up's codes, scales and global scales, then down's (global
/// scales: NVFP4's, else 0 for a null pointer); `(route, plan)` as the dense path's.
#[allow(clippy::too_many_arguments)]
fn launch_quantized(
    b: &CudaBackend,
    s: &mut State,
    (x, act, ys): (u64, u64, u64),
    [guc, gus, gug, dnc, dns, dng]: [u64; 6],
    (route, tiles): (u64, u64),
    d: &MoeDims,
    (pairs, mt, path): (usize, usize, Path),
    (format, group): (QFormat, usize),
    dt: DType,
) -> Result<()> {
    let (h, i, top, e, g) = (d.h as u32, d.i as u32, d.k as u32, d.e as u32, group as u32);
    let (bits, dtc) = (super::quant::format_id(format), dtype_code(dt));
    if path == Path::Vec {
        let cfg = |n: usize| LaunchConfig {
            grid_dim: (n.div_ceil(8) as u32, pairs as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        kernel!(b, s, "qmoe_gate_up_vec", cfg(d.i), x, guc, gus, route, act, h, i, top, e, g, bits, dtc, dtc, gug)?;
        return kernel!(
            b,
            s,
            "qmoe_down_vec",
            cfg(d.h),
            act,
            dnc,
            dns,
            route,
            ys,
            i,
            h,
            top,
            e,
            g,
            bits,
            dtc,
            dtc,
            dng
        );
    }
    let bm = if path == Path::TensorCores { TC_BM } else { BM };
    let (n_pairs, mt32, bm32) = (pairs as u32, mt as u32, bm as u32);
    let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
    kernel!(b, s, "moe_align", one, route, tiles, n_pairs, e, mt32, bm32)?;
    if path == Path::TensorCores {
        let cfg = |n: usize| LaunchConfig {
            grid_dim: (mt as u32, n.div_ceil(TC_BN) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (gu, dn) = if dt == DType::F16 {
            ("qmoe_gate_up_tc_f16", "qmoe_down_tc_f16")
        } else {
            ("qmoe_gate_up_tc_bf16", "qmoe_down_tc_bf16")
        };
        launch_tc(b, s, gu, cfg(d.i), &[x, guc, gus, gug, tiles, act], &[h, i, top, mt32, g], Some(bits))?;
        return launch_tc(b, s, dn, cfg(d.h), &[act, dnc, dns, dng, tiles, ys], &[i, h, top, mt32, g], Some(bits));
    }
    let cfg = |n: usize| LaunchConfig {
        grid_dim: (mt as u32, n.div_ceil(BN) as u32, 1),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    kernel!(b, s, "qmoe_gate_up", cfg(d.i), x, guc, gus, tiles, act, h, i, top, mt32, g, bits, dtc, dtc, gug)?;
    kernel!(b, s, "qmoe_down", cfg(d.h), act, dnc, dns, tiles, ys, i, h, top, mt32, g, bits, dtc, dtc, dng)
}

/// The tensor-core grouped GEMMs (gate_up, down) of `cuda/moe_tc.cu` for this dtype and layout.
fn tc_entries(dt: DType, trans_b: bool) -> (&'static str, &'static str) {
    match (dt, trans_b) {
        (DType::F16, false) => ("moe_gate_up_tc_f16", "moe_down_tc_f16"),
        (DType::F16, true) => ("moe_gate_up_tc_f16_t", "moe_down_tc_f16_t"),
        (_, false) => ("moe_gate_up_tc_bf16", "moe_down_tc_bf16"),
        (_, true) => ("moe_gate_up_tc_bf16_t", "moe_down_tc_bf16_t"),
    }
}

/// Queues one tensor-core grouped GEMM of `cuda/moe_tc.cu`: its pointers (a, weights, plan,
/// out; quantized: a, codes, scales, global scales, plan, out), its u32 sizes (K, N, top k, MT;
/// quantized: and the group) and, for the quantized entries, the format id.
fn launch_tc(
    b: &CudaBackend,
    s: &mut State,
    entry: &'static str,
    cfg: LaunchConfig,
    ptrs: &[u64],
    dims: &[u32],
    fmt: Option<i32>,
) -> Result<()> {
    let func = b.function(s, entry)?;
    let mut lb = b.stream.launch_builder(&func);
    for p in ptrs {
        lb.arg(p);
    }
    for d in dims {
        lb.arg(d);
    }
    if let Some(f) = &fmt {
        lb.arg(f);
    }
    // SAFETY: the arguments match the entries of grouped_tc (four pointers, four u32) and of
    // qgrouped_tc (six pointers, five u32, an int); the plan, act and output regions were sized
    // for MT tiles of TC_BM rows by the callers.
    unsafe { lb.launch(cfg) }.map(|_| ()).map_err(driver_err("launching a tensor-core MoE GEMM"))
}
