//! The ceilings a speed run is held against, measured on the same backend in the same run: the
//! device's copy bandwidth (a batch-1 decode step must read its weights at least once) and the
//! rate of a large bf16 matmul (what a prefill's projections can reach at best).
//!
//! Each is one kernel launched through `Backend::launch` (so on CUDA the matmul goes through
//! cuBLAS when it is found) on buffers filled on the device, timed on the host after a warm-up:
//! the best of three trials of back-to-back launches, each trial ending with `Backend::sync`.

use super::bench::SpeedReport;
use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::{DType, Op, TensorDesc};
use crate::model::qwen3_vl::Qwen3VL;
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// Copy size on GPUs, in MiB (a large buffer, far past every cache).
pub const GPU_COPY_MIB: usize = 1024;
/// Copy size on CPUs (the CPU backend, software adapters such as lavapipe), in MiB.
pub const CPU_COPY_MIB: usize = 64;

/// Wall time one trial aims at (launches are repeated until it is reached).
const TRIAL: Duration = Duration::from_millis(100);
/// Most launches in one trial.
const MAX_REPS: usize = 200;
const TRIALS: usize = 3;

/// A measured device-to-device copy.
#[derive(Debug, Clone)]
pub struct CopyRate {
    /// Bytes copied per launch (each read once and written once).
    pub bytes: u64,
    /// Best time of one copy.
    pub time: Duration,
}

impl CopyRate {
    /// Bytes read plus bytes written per second (the convention of STREAM's copy).
    pub fn bytes_per_second(&self) -> f64 {
        2.0 * self.bytes as f64 / self.time.as_secs_f64().max(1e-12)
    }
}

/// A measured matmul `[m, k] x [n, k]^T` in bf16 (f32 accumulation, bf16 output).
#[derive(Debug, Clone)]
pub struct MatmulRate {
    /// Rows of the left operand (tokens).
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Rows of the stored weight (outputs).
    pub n: usize,
    /// Best time of one product.
    pub time: Duration,
}

impl MatmulRate {
    /// Floating-point operations per second (2 m n k per product).
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64 / self.time.as_secs_f64().max(1e-12)
    }
}

/// The copy size used when none is asked for: large on GPUs, small where the device is a CPU.
pub fn default_copy_mib(backend: &dyn Backend) -> usize {
    if backend.info().device_type == "Cpu" {
        CPU_COPY_MIB
    } else {
        GPU_COPY_MIB
    }
}

/// Buffers freed when dropped, so an error half way leaks nothing.
struct Buffers<'b> {
    backend: &'b dyn Backend,
    ids: Vec<BufferId>,
}

impl Buffers<'_> {
    /// A buffer for `desc` filled on the device with seeded random values.
    fn random(&mut self, desc: &TensorDesc, seed: u64) -> Result<BufferId> {
        let id = self.backend.alloc(desc)?;
        self.ids.push(id);
        let op = Op::Random { seed, offset: 0.0, scale: 1.0, dtype: desc.dtype, shape: desc.shape.clone() };
        self.backend.launch(&Kernel { op, inputs: vec![], output: desc.clone() }, &[], id)?;
        Ok(id)
    }

    fn empty(&mut self, desc: &TensorDesc) -> Result<BufferId> {
        let id = self.backend.alloc(desc)?;
        self.ids.push(id);
        Ok(id)
    }
}

impl Drop for Buffers<'_> {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            self.backend.free(id);
        }
    }
}

/// The best time of one launch of `kernel`, after a warm-up that builds it.
fn time_kernel(backend: &dyn Backend, kernel: &Kernel, inputs: &[BufferId], output: BufferId) -> Result<Duration> {
    kernel.check()?;
    backend.launch(kernel, inputs, output)?;
    backend.sync()?;
    let t = Instant::now();
    backend.launch(kernel, inputs, output)?;
    backend.sync()?;
    let one = t.elapsed().max(Duration::from_nanos(1));
    let reps = ((TRIAL.as_secs_f64() / one.as_secs_f64()) as usize).clamp(1, MAX_REPS);
    let mut best = one;
    for _ in 0..TRIALS {
        let t = Instant::now();
        for _ in 0..reps {
            backend.launch(kernel, inputs, output)?;
        }
        backend.sync()?;
        best = best.min(t.elapsed() / reps as u32);
    }
    Ok(best)
}

/// Times a device-to-device copy of `mib` MiB (an f32 cast to f32: one load and one store per
/// element), capped at the device's largest buffer.
pub fn copy_bandwidth(backend: &dyn Backend, mib: usize) -> Result<CopyRate> {
    if mib == 0 {
        return Err(Error::Input("--roofline-mib must be at least 1".into()));
    }
    let want = (mib as u64) << 20;
    let bytes = want.min(backend.info().max_buffer_bytes) / 1024 * 1024;
    if bytes == 0 {
        return Err(Error::Backend(format!("{}: no buffer to copy", backend.info().backend)));
    }
    let desc = TensorDesc::new(DType::F32, [(bytes / 4) as usize]);
    let mut bufs = Buffers { backend, ids: Vec::new() };
    let x = bufs.random(&desc, 0x0c0b)?;
    let y = bufs.empty(&desc)?;
    let kernel = Kernel { op: Op::Cast(DType::F32), inputs: vec![desc.clone()], output: desc };
    let time = time_kernel(backend, &kernel, &[x], y).map_err(|e| context("copy", e))?;
    Ok(CopyRate { bytes, time })
}

/// Times `[m, k] x [n, k]^T` with bf16 operands and output (`Op::MatMul { trans_b: true }`,
/// weights stored `[out, in]` as the model's are).
pub fn matmul_rate(backend: &dyn Backend, m: usize, k: usize, n: usize) -> Result<MatmulRate> {
    if m == 0 || k == 0 || n == 0 {
        return Err(Error::Input(format!("a matmul of {m} x {k} x {n} has nothing to time")));
    }
    let (ad, bd) = (TensorDesc::new(DType::BF16, [m, k]), TensorDesc::new(DType::BF16, [n, k]));
    let yd = TensorDesc::new(DType::BF16, [m, n]);
    let mut bufs = Buffers { backend, ids: Vec::new() };
    let a = bufs.random(&ad, 0xa)?;
    let b = bufs.random(&bd, 0xb)?;
    let y = bufs.empty(&yd)?;
    let kernel = Kernel { op: Op::MatMul { trans_b: true }, inputs: vec![ad, bd], output: yd };
    let time = time_kernel(backend, &kernel, &[a, b], y).map_err(|e| context("matmul", e))?;
    Ok(MatmulRate { m, k, n, time })
}

fn context(what: &str, e: Error) -> Error {
    match e {
        Error::Backend(m) => Error::Backend(format!("roofline {what}: {m}")),
        e => e,
    }
}

/// Parameters of the text decoder one token multiplies by: every linear weight of the layers
/// (of MoE experts, the routed share top_k / experts); norms and biases left out.
pub fn active_decoder_params(model: &Qwen3VL) -> f64 {
    let share = model.config.moe().map_or(1.0, |m| m.top_k as f64 / m.num_experts as f64);
    let layers = model.tname("layers.");
    model
        .weight_specs()
        .iter()
        .filter(|(n, s)| n.starts_with(&layers) && s.len() >= 2)
        .map(|(n, s)| s.iter().product::<usize>() as f64 * if n.contains(".experts.") { share } else { 1.0 })
        .sum()
}

/// Floating-point operations of a text-only prefill of `t` tokens: 2 per active decoder
/// parameter per token, causal attention (QK^T and PV: 4 d per query-key pair, t (t + 1) / 2
/// pairs per head and layer) and the LM head on the last position only.
pub fn prefill_flops(model: &Qwen3VL, t: usize) -> f64 {
    let c = &model.config.text;
    let pairs = (t * (t + 1) / 2) as f64;
    let attention = (c.num_layers * c.num_heads * 4 * c.head_dim) as f64 * pairs;
    2.0 * active_decoder_params(model) * t as f64 + attention + 2.0 * (c.vocab_size * c.hidden_size) as f64
}

/// `v` with a decimal prefix: `612.30 TFLOP`, `4.10 TB`, `1.05 M`.
fn count(v: f64, unit: &str) -> String {
    match v {
        v if v >= 1e12 => format!("{:.2} T{unit}", v / 1e12),
        v if v >= 1e9 => format!("{:.2} G{unit}", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M{unit}", v / 1e6),
        v => format!("{:.2} k{unit}", v / 1e3),
    }
}

fn bytes(b: f64) -> String {
    match b {
        b if b >= (1u64 << 30) as f64 => format!("{:.2} GiB", b / (1u64 << 30) as f64),
        b => format!("{:.2} MiB", b / (1u64 << 20) as f64),
    }
}

/// `floor: ...`: the decode floor (weight bytes a token reads over the copy bandwidth) and the
/// share of it the measured decode reached.
pub fn floor_line(model: &Qwen3VL, copy: &CopyRate, run: &SpeedReport) -> String {
    let read = model.decode_bytes() as f64;
    let bw = copy.bytes_per_second();
    let floor = read / bw;
    let decode = run.decode.as_secs_f64() / run.decode_steps.max(1) as f64;
    format!(
        "floor: a decode token reads {} of weights; copy bandwidth {} ({} copy, bytes read + written) -> floor {:.3} ms/token ({:.1} tok/s); decode {:.3} ms/token reached {:.0}% of the floor",
        bytes(read),
        count(bw, "B/s"),
        bytes(copy.bytes as f64),
        floor * 1e3,
        1.0 / floor,
        decode * 1e3,
        100.0 * floor / decode.max(1e-12)
    )
}

/// `matmul: ...`: the measured bf16 matmul rate, the prefill's work and the share of that rate
/// the measured prefill reached.
pub fn matmul_line(model: &Qwen3VL, mm: &MatmulRate, run: &SpeedReport) -> String {
    let t = run.prompt_tokens;
    let flops = prefill_flops(model, t);
    let rate = flops / run.prefill.as_secs_f64().max(1e-12);
    format!(
        "matmul: bf16 [{} x {}] x [{} x {}]^T at {}; prefill of {t} tokens does {} ({}/token: 2 x {} active decoder params per token, causal attention 4 d (t + 1) / 2 per head and layer, LM head once) in {:.1} ms = {} -> reached {:.0}% of the matmul rate",
        mm.m,
        mm.k,
        mm.n,
        mm.k,
        count(mm.flops(), "FLOP/s"),
        count(flops, "FLOP"),
        count(flops / t.max(1) as f64, "FLOP"),
        count(active_decoder_params(model), ""),
        run.prefill.as_secs_f64() * 1e3,
        count(rate, "FLOP/s"),
        100.0 * rate / mm.flops()
    )
}

/// The matmul a prefill of `tokens` is held against: the tokens times the model's widest
/// projection, `[tokens, hidden] x [width, hidden]^T` with width the dense MLP's (or, for a
/// model without one, four times the hidden size).
pub fn prefill_matmul_shape(model: &Qwen3VL, tokens: usize) -> (usize, usize, usize) {
    let c = &model.config.text;
    let width = if c.intermediate_size > 0 { c.intermediate_size } else { 4 * c.hidden_size };
    (tokens, c.hidden_size, width)
}
