//! Speed runs: a prompt of seeded random tokens (no tokenizer needed), prefilled and then
//! decoded greedily for a fixed number of steps (stop tokens ignored), after a short warm-up
//! that builds the kernels and pipelines. The figures are wall times on the host, each step
//! ending when its logits are back, as a user sees them.

use super::sampler::SamplingOptions;
use super::{GenerateOptions, Session};
use crate::graph::random;
use crate::model::qwen3_vl::PrefillInputs;
use crate::{Error, Result};
use std::time::{Duration, Instant};

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
