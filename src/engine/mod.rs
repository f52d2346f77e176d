//! Running a model on a backend: weights uploaded once, a prefill per request, one-token
//! decode steps over a KV cache that stays on the device, sampling, stopping, streaming.

pub mod batch;
pub mod bench;
pub mod kv;
pub mod roofline;
pub mod sampler;
pub mod serve;
mod step;

use crate::backend::{Backend, BufferId};
use crate::compile::Options;
use crate::exec::Executor;
use crate::model::qwen3_vl::{PrefillGraph, PrefillInputs, Qwen3VL};
use crate::{Error, HostTensor, Result};
use sampler::{Sampler, SamplingOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Checks that a prompt and its answer fit the model's context.
pub(crate) fn fits_context(model: &Qwen3VL, prompt: usize, max_new_tokens: usize) -> Result<()> {
    let context = model.config.text.max_position_embeddings;
    if prompt + max_new_tokens > context {
        return Err(Error::Input(format!(
            "prompt ({prompt} tokens) + max new tokens ({max_new_tokens}) exceed the model's context of {context}"
        )));
    }
    Ok(())
}

/// A model with its weights on a backend's device.
pub struct Session<'b> {
    backend: &'b dyn Backend,
    /// The model.
    pub model: Qwen3VL,
    weights: HashMap<String, BufferId>,
    compile: Options,
    /// The last decode step, compiled, retyped for the next (see `step.rs`).
    step: Option<step::Step>,
}

/// The KV cache of one sequence: per layer, keys and values `[kv_heads, len, head_dim]`.
pub struct KvCache<'b> {
    backend: &'b dyn Backend,
    layers: Vec<(BufferId, BufferId)>,
    /// Positions cached.
    pub len: usize,
    /// Added to a cache position to get the rotary position (from the prompt's images).
    pub rope_delta: i64,
}

impl Drop for KvCache<'_> {
    fn drop(&mut self) {
        for (k, v) in self.layers.drain(..) {
            self.backend.free(k);
            self.backend.free(v);
        }
    }
}

/// What a prefill returns besides the cache.
pub struct Prefill<'b> {
    /// Logits `[T, vocab]` (all positions) or `[1, vocab]`.
    pub logits: HostTensor,
    /// Merged image features, when asked for and present.
    pub image_embeds: Option<HostTensor>,
    /// DeepStack features, when asked for.
    pub deepstack: Vec<HostTensor>,
    /// The cache after the prompt.
    pub cache: KvCache<'b>,
}

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// New tokens at most.
    pub max_new_tokens: usize,
    /// Sampling.
    pub sampling: SamplingOptions,
    /// Tokens that end the answer (not emitted).
    pub stop: Vec<u32>,
}

/// Timings of one generation.
#[derive(Debug, Clone, Default)]
pub struct GenerateStats {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub new_tokens: usize,
    /// Wall time of the prefill (to the first token).
    pub prefill: Duration,
    /// Wall time of the decode steps.
    pub decode: Duration,
}

impl GenerateStats {
    /// Prompt tokens per second.
    pub fn prefill_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }
    /// Decode tokens per second (tokens after the first).
    pub fn decode_tps(&self) -> f64 {
        self.new_tokens.saturating_sub(1) as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

impl<'b> Session<'b> {
    /// A session; weights are uploaded as graphs first need them.
    pub fn new(backend: &'b dyn Backend, model: Qwen3VL) -> Self {
        Session { backend, model, weights: HashMap::new(), compile: Options::default(), step: None }
    }

    /// Chooses the compiler passes for the graphs this session runs (fusion on by default).
    pub fn set_compile_options(&mut self, opts: Options) {
        self.compile = opts;
        self.step = None;
    }

    /// The backend this session runs on.
    pub fn backend(&self) -> &'b dyn Backend {
        self.backend
    }

    /// Uploads every weight now (otherwise they go up with the first request).
    pub fn upload_all(&mut self, mut progress: impl FnMut(usize, usize)) -> Result<()> {
        let all = self.model.device_weights();
        for (i, n) in all.iter().enumerate() {
            self.weight(n)?;
            progress(i + 1, all.len());
        }
        Ok(())
    }

    fn weight(&mut self, name: &str) -> Result<BufferId> {
        if let Some(b) = self.weights.get(name) {
            return Ok(*b);
        }
        let mut found = None;
        for (n, buf) in self.model.upload_weight(self.backend, name)? {
            if n == name {
                found = Some(buf);
            }
            self.weights.insert(n, buf);
        }
        found.ok_or_else(|| Error::Model(format!("no device weight `{name}`")))
    }

    fn bind(&mut self, ex: &mut Executor, weights: &[String], data: &[(String, HostTensor)]) -> Result<()> {
        for n in weights {
            let b = self.weight(n)?;
            ex.bind(n, b)?;
        }
        for (n, t) in data {
            ex.set(n, t)?;
        }
        Ok(())
    }

    /// Runs the prompt; `all_logits` keeps every position's logits, `features` reads back the
    /// image features.
    pub fn prefill(&mut self, inp: &PrefillInputs, all_logits: bool, features: bool) -> Result<Prefill<'b>> {
        let mut pg = PrefillGraph::build(&self.model, inp, all_logits)?;
        let mut keep: Vec<_> = pg.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
        if features {
            keep.extend(pg.image_embeds.iter().chain(&pg.deepstack));
        }
        let mut ex = Executor::with_options(self.backend, std::mem::take(&mut pg.graph), &keep, self.compile)?;
        self.bind(&mut ex, &pg.weights, &pg.data)?;
        ex.run()?;
        let logits = ex.read(pg.logits)?;
        let (image_embeds, deepstack) = match (features, pg.image_embeds) {
            (true, Some(e)) => (Some(ex.read(e)?), pg.deepstack.iter().map(|d| ex.read(*d)).collect::<Result<_>>()?),
            _ => (None, Vec::new()),
        };
        let mut layers = Vec::with_capacity(pg.kv.len());
        for (k, v) in &pg.kv {
            layers.push((ex.take(*k)?, ex.take(*v)?));
        }
        let cache = KvCache { backend: self.backend, layers, len: inp.ids.len(), rope_delta: pg.rope_delta };
        Ok(Prefill { logits, image_embeds, deepstack, cache })
    }

    /// One decode step: appends `token` to the cache and returns the next logits `[vocab]`.
    /// The compiled step is kept and retyped for the next one (see `step.rs`).
    pub fn decode(&mut self, token: u32, cache: &mut KvCache<'b>) -> Result<Vec<f32>> {
        let at = (token, cache.len, cache.rope_delta);
        let step = step::Step::next(self.step.take(), &self.model, self.backend, self.compile, at)?;
        let mut ex = Executor::from_compiled(self.backend, step.compiled.clone())?;
        self.bind(&mut ex, &step.weights, &step.data)?;
        for ((kn, vn), (k, v)) in step.kv_inputs.iter().zip(&cache.layers) {
            ex.bind(kn, *k)?;
            ex.bind(vn, *v)?;
        }
        ex.run()?;
        let logits = ex.read(step.logits)?.to_f32();
        let mut grown = Vec::with_capacity(step.kv.len());
        for (k, v) in &step.kv {
            grown.push((ex.take(*k)?, ex.take(*v)?));
        }
        drop(ex);
        self.step = Some(step);
        for ((k, v), new) in cache.layers.iter_mut().zip(grown) {
            self.backend.free(*k);
            self.backend.free(*v);
            (*k, *v) = new;
        }
        cache.len += 1;
        Ok(logits)
    }

    /// Generates from a prompt, calling `on_token` with each new token as it is produced
    /// (return false to stop early). Stops at a stop token (not emitted) or the token limit.
    pub fn generate(
        &mut self,
        inp: &PrefillInputs,
        opts: &GenerateOptions,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<(Vec<u32>, GenerateStats)> {
        let mut sampler = Sampler::new(opts.sampling.clone())?;
        fits_context(&self.model, inp.ids.len(), opts.max_new_tokens)?;
        let mut stats = GenerateStats { prompt_tokens: inp.ids.len(), ..Default::default() };
        let mut out = Vec::new();
        if opts.max_new_tokens == 0 {
            return Ok((out, stats));
        }
        let t0 = Instant::now();
        let pre = self.prefill(inp, false, false)?;
        let mut cache = pre.cache;
        let mut tok = sampler.pick(&pre.logits.to_f32());
        stats.prefill = t0.elapsed();
        let t1 = Instant::now();
        loop {
            if opts.stop.contains(&tok) {
                break;
            }
            out.push(tok);
            if !on_token(tok) || out.len() >= opts.max_new_tokens {
                break;
            }
            let logits = self.decode(tok, &mut cache)?;
            tok = sampler.pick(&logits);
        }
        stats.decode = t1.elapsed();
        stats.new_tokens = out.len();
        Ok((out, stats))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        for (_, b) in self.weights.drain() {
            self.backend.free(b);
        }
    }
}
