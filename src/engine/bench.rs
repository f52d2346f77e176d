//! Speed runs: a prompt of seeded random tokens (no tokenizer needed), prefilled and then
//! decoded greedily for a fixed number of steps (stop tokens ignored), after a short warm-up
//! that builds the kernels and pipelines. The figures are wall times on the host, each step
//! ending when its logits are back, as a user sees them. Asked for, a run also measures its
//! ceilings (`roofline`) and times one image through the vision tower.

use super::roofline;
use super::sampler::SamplingOptions;
use super::{GenerateOptions, Session};
use crate::exec::Executor;
use crate::graph::random;
use crate::io::image::{preprocess_rgb, ImageConfig, RgbImage};
use crate::model::qwen3_vl::{PrefillInputs, VisionGraph};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// What `lumen bench` measures besides the speed run (each off unless asked for).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Extras {
    /// Also measure the backend's copy bandwidth and bf16 matmul rate, and print the decode
    /// floor (weight bytes a token reads over that bandwidth) and the share of the matmul rate
    /// the prefill reached.
    #[arg(long)]
    pub roofline: bool,
    /// With --roofline: MiB copied to measure the bandwidth (default 1024 on GPUs, 64 where
    /// the device is a CPU, e.g. lavapipe).
    #[arg(long, value_name = "MIB", requires = "roofline", value_parser = at_least_one)]
    pub roofline_mib: Option<usize>,
    /// Also time one random square image of this many pixels a side through the vision tower
    /// (after a warm-up with the same image).
    #[arg(long, value_name = "PIXELS", value_parser = at_least_one)]
    pub image_size: Option<usize>,
}

fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the extras asked for after a speed run, printing one line each as it is measured.
pub fn run_extras(session: &mut Session, run: &SpeedReport, extras: &Extras) -> Result<()> {
    if extras.roofline {
        let backend = session.backend();
        let mib = extras.roofline_mib.unwrap_or_else(|| roofline::default_copy_mib(backend));
        let copy = roofline::copy_bandwidth(backend, mib)?;
        println!("{}", roofline::floor_line(&session.model, &copy, run));
        let (m, k, n) = roofline::prefill_matmul_shape(&session.model, run.prompt_tokens);
        let mm = roofline::matmul_rate(backend, m, k, n)?;
        println!("{}", roofline::matmul_line(&session.model, &mm, run));
    }
    if let Some(side) = extras.image_size {
        let v = vision_run(session, side, 0)?;
        let c = &session.model.config.vision;
        println!(
            "vision: one {}x{} image, {} patches -> {} tokens through {} blocks: {:.1} ms (graph, compile and pixel upload {:.1} ms, run and read back {:.1} ms; warm-up {:.2} s)",
            v.width,
            v.height,
            v.patches,
            v.tokens,
            c.depth,
            (v.build + v.run).as_secs_f64() * 1e3,
            v.build.as_secs_f64() * 1e3,
            v.run.as_secs_f64() * 1e3,
            v.warmup.as_secs_f64()
        );
    }
    Ok(())
}

/// One image through the vision tower.
#[derive(Debug, Clone)]
pub struct VisionReport {
    /// Width in pixels after the processor's resize.
    pub width: usize,
    /// Height in pixels after the processor's resize.
    pub height: usize,
    /// Vision patches.
    pub patches: usize,
    /// Tokens after the merger.
    pub tokens: usize,
    /// The untimed first pass (kernels and pipelines built).
    pub warmup: Duration,
    /// Graph building and compiling.
    pub build: Duration,
    /// Running the tower and reading its features back.
    pub run: Duration,
}

/// Times a `side` x `side` image of seeded random pixels through the vision tower alone, as
/// the serving engine encodes images (the tower's graph, its features read back).
pub fn vision_run(session: &mut Session, side: usize, seed: u64) -> Result<VisionReport> {
    let c = &session.model.config.vision;
    let config = ImageConfig {
        patch_size: c.patch_size,
        temporal_patch_size: c.temporal_patch_size,
        merge_size: c.spatial_merge_size,
        ..ImageConfig::qwen3_vl()
    };
    let data = (0..side as u64 * side as u64 * 3).map(|i| random::bits(seed, i) as u8).collect();
    let pixels = preprocess_rgb(&config, &RgbImage { width: side, height: side, data })?;
    let [_, gh, gw] = pixels.grid_thw;
    let (patches, tokens) = (pixels.num_patches(), pixels.num_tokens(config.merge_size));
    let images = [pixels];
    let t0 = Instant::now();
    encode(session, &images)?;
    let warmup = t0.elapsed();
    let (build, run) = encode(session, &images)?;
    let (height, width) = (gh * config.patch_size, gw * config.patch_size);
    Ok(VisionReport { width, height, patches, tokens, warmup, build, run })
}

/// One vision pass: (graph and compile time, run and read-back time).
fn encode(session: &mut Session, images: &[crate::io::image::Pixels]) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let vg = VisionGraph::build(&session.model, images)?;
    let mut outs = vec![vg.embeds];
    outs.extend(&vg.deepstack);
    let mut ex = Executor::with_options(session.backend, vg.graph, &[], session.compile)?;
    session.bind(&mut ex, &vg.weights, &vg.data)?;
    let build = t0.elapsed();
    let t1 = Instant::now();
    ex.run()?;
    for o in outs {
        ex.read(o)?;
    }
    Ok((build, t1.elapsed()))
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SpeedRun {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Decode steps after the prompt.
    pub decode_tokens: usize,
    /// Seed of the prompt's token ids.
    pub seed: u64,
}

/// What it took.
#[derive(Debug, Clone)]
pub struct SpeedReport {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Decode steps timed.
    pub decode_steps: usize,
    /// The warm-up (a short prefill and two decode steps).
    pub warmup: Duration,
    /// The prefill, to its first token.
    pub prefill: Duration,
    /// All timed decode steps.
    pub decode: Duration,
}

impl SpeedReport {
    /// Prompt tokens per second.
    pub fn prefill_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }
    /// Decode tokens per second.
    pub fn decode_tps(&self) -> f64 {
        self.decode_steps as f64 / self.decode.as_secs_f64().max(1e-9)
    }
    /// Milliseconds per decode step.
    pub fn decode_ms(&self) -> f64 {
        self.decode.as_secs_f64() * 1e3 / self.decode_steps.max(1) as f64
    }
}

/// `n` token ids below every special token of the model, seeded.
pub fn random_prompt(session: &Session, n: usize, seed: u64) -> PrefillInputs {
    let c = &session.model.config;
    let limit = c.image_token_id.min(c.vision_start_token_id).min(c.text.vocab_size as u32).max(1);
    let ids = (0..n as u64).map(|i| random::bits(seed, i) % limit).collect();
    PrefillInputs { ids, images: Vec::new() }
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_new_tokens: n, sampling: SamplingOptions::default(), stop: Vec::new() }
}

/// Runs the warm-up, then the timed prefill and decode steps.
pub fn speed_run(session: &mut Session, run: &SpeedRun) -> Result<SpeedReport> {
    if run.prompt_tokens == 0 {
        return Err(Error::Input("a speed run needs at least one prompt token".into()));
    }
    let t0 = Instant::now();
    let warm = random_prompt(session, run.prompt_tokens.min(16), run.seed ^ 0x5eed);
    session.generate(&warm, &greedy(3), |_| true)?;
    let warmup = t0.elapsed();
    let prompt = random_prompt(session, run.prompt_tokens, run.seed);
    // One token comes from the prefill; each decode step gives one more.
    let (_, stats) = session.generate(&prompt, &greedy(run.decode_tokens + 1), |_| true)?;
    Ok(SpeedReport {
        prompt_tokens: stats.prompt_tokens,
        decode_steps: stats.new_tokens.saturating_sub(1),
        warmup,
        prefill: stats.prefill,
        decode: stats.decode,
    })
}

/// This process's peak resident memory (Linux `VmHWM`), in bytes; `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
