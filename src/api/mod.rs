//! The embedding API: load a model once ([`Lumen::load`]), then ask it questions from any
//! number of threads ([`Lumen::generate`]); each answer streams back as text pieces and can be
//! cancelled from anywhere. The CLI, the HTTP server and the C ABI are built on it.
//!
//! The model, its device state and the batching engine live on one engine thread; a
//! [`Lumen`] is a cheap, `Send + Sync` handle to it (clone it freely). Requests from several
//! threads are batched together. A request's failure (a bad image, a prompt too long) is that
//! request's error alone; the engine goes on serving the others.
//!
//! ```
//! use lumen::{ChatMessage, Content, GenerationOptions, LoadOptions, Lumen, ModelSource};
//! # let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen3vl-dense");
//! let model = Lumen::load(&ModelSource::dir(dir), &LoadOptions::default())?;
//! let question = vec![ChatMessage::user(vec![Content::text("What is in the picture?")])];
//! let mut answer = model.generate(&question, &GenerationOptions::greedy(8))?;
//! for piece in &mut answer {
//!     print!("{}", piece?);
//! }
//! println!("\n({:?}, {} tokens)", answer.finish_reason(), answer.completion_tokens());
//! # Ok::<(), lumen::Error>(())
//! ```

pub mod engine;
pub mod generation;
pub mod metrics;
pub mod request;
pub mod text;

pub use engine::{LoadProgress, ModelInfo};
pub use generation::{CancelHandle, Completion, FinishReason, Generation};
pub use request::{ChatMessage, Content, GenerationOptions, ImageSource};

use crate::engine::batch::BatchOptions;
use crate::model::processor::Processor;
use crate::model::qwen3_vl::{PrefillInputs, Quantization, Qwen3VL};
use crate::model::synthetic::SyntheticSpec;
use crate::{Error, Result};
use engine::{Command, Engine, Opener, Out, Sink};
use metrics::{Metrics, Snapshot};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use text::Answer;

/// Which model to load.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A checkpoint directory (config.json, *.safetensors, tokenizer.json, ...).
    Dir(PathBuf),
    /// A preset's shapes with seeded random weights generated on the device (no checkpoint):
    /// `tiny`, `qwen3-vl-2b`, `-4b`, `-8b`, `-30b-a3b`, `-235b-a22b`.
    Synthetic {
        /// The preset.
        preset: String,
        /// Keep only the first N decoder layers.
        layers: Option<usize>,
        /// Seed of the weights.
        seed: u64,
        /// A folder with tokenizer.json (chat template and preprocessor config optional).
        tokenizer: Option<PathBuf>,
    },
}

impl ModelSource {
    /// A checkpoint directory.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        ModelSource::Dir(path.into())
    }

    /// A preset with seed-0 weights, prompts tokenized with the tokenizer in `tokenizer`.
    pub fn synthetic(preset: impl Into<String>, tokenizer: impl Into<PathBuf>) -> Self {
        ModelSource::Synthetic { preset: preset.into(), layers: None, seed: 0, tokenizer: Some(tokenizer.into()) }
    }

    /// The model (weights read lazily from disk, or synthetic).
    pub fn model(&self) -> Result<Qwen3VL> {
        match self {
            ModelSource::Dir(dir) => Qwen3VL::load(dir),
            ModelSource::Synthetic { preset, layers, seed, .. } => {
                let mut spec = SyntheticSpec::preset(preset)?;
                if let Some(n) = layers {
                    spec = spec.with_layers(*n)?;
                }
                spec.model(*seed)
            }
        }
    }

    /// The tokenizer, chat template and image settings for `model`.
    pub fn processor(&self, model: &Qwen3VL) -> Result<Processor> {
        let dir = match self {
            ModelSource::Dir(dir) => dir,
            ModelSource::Synthetic { tokenizer: Some(dir), .. } => dir,
            ModelSource::Synthetic { tokenizer: None, .. } => {
                return Err(Error::Input(
                    "a synthetic model has no tokenizer: give a folder with tokenizer.json (such as \
                     tests/data/qwen3-tokenizer)"
                        .into(),
                ))
            }
        };
        Processor::from_dir(dir, &model.config)
    }

    /// A short name: the directory's, or `synthetic-PRESET`.
    pub fn name(&self) -> String {
        match self {
            ModelSource::Dir(dir) => dir.file_name().map_or("lumen".into(), |n| n.to_string_lossy().into_owned()),
            ModelSource::Synthetic { preset, .. } => format!("synthetic-{preset}"),
        }
    }
}

/// How to load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// `auto` (CUDA, else wgpu, else cpu), `cuda`, `wgpu` or `cpu`.
    pub backend: String,
    /// The batching engine's limits (sequences at once, tokens per step, KV cache size).
    pub batch: BatchOptions,
    /// Run the compiler's fusion passes (on by default).
    pub fuse: bool,
    /// New tokens when a request gives no limit (cut to what fits).
    pub default_max_tokens: usize,
    /// Quantize the text decoder's linear weights, MoE experts included, as they load
    /// (`None`: as stored).
    pub quantize: Option<Quantization>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            backend: "auto".into(),
            batch: BatchOptions::default(),
            fuse: true,
            default_max_tokens: request::DEFAULT_MAX_TOKENS,
            quantize: None,
        }
    }
}

/// A request handed to the engine with [`Lumen::submit`].
pub struct Submitted {
    /// Cancels it.
    pub cancel: CancelHandle,
    /// Tokens of its prompt.
    pub prompt_tokens: usize,
    /// Its token limit.
    pub max_new_tokens: usize,
}

struct Inner {
    tx: std::sync::mpsc::Sender<Command>,
    info: ModelInfo,
    processor: Arc<Processor>,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    default_max_tokens: usize,
    engine: Mutex<Option<Engine>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown { grace: Duration::ZERO });
        if let Some(e) = self.engine.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            e.join();
        }
    }
}

/// A loaded model, ready for requests; cheap to clone, shareable across threads. The engine
/// stops when the last clone is dropped (requests still running then end with an error).
#[derive(Clone)]
pub struct Lumen {
    inner: Arc<Inner>,
}

impl Lumen {
    /// Loads a model onto the backend `opts` names.
    pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<Lumen> {
        Lumen::load_with_progress(source, opts, |_| {})
    }

    /// Loads a model, reporting progress (on the engine thread) as it goes.
    pub fn load_with_progress(
        source: &ModelSource,
        opts: &LoadOptions,
        progress: impl FnMut(LoadProgress) + Send + 'static,
    ) -> Result<Lumen> {
        let (s, quantize) = (source.clone(), opts.quantize);
        let open: Opener = Box::new(move || {
            let mut m = s.model()?;
            m.set_quantization(quantize)?;
            let p = s.processor(&m)?;
            Ok((m, p))
        });
        Lumen::from_opener(&source.name(), open, opts, Box::new(progress))
    }

    /// Loads a model that `open` builds (on the engine thread), for callers with their own way
    /// of finding one.
    pub fn from_opener(
        name: &str,
        open: Opener,
        opts: &LoadOptions,
        progress: Box<dyn FnMut(LoadProgress) + Send>,
    ) -> Result<Lumen> {
        if opts.batch.max_seqs == 0 {
            return Err(Error::Input("the engine needs room for at least one sequence".into()));
        }
        let metrics = Arc::new(Metrics::default());
        let engine = Engine::start(opts.backend.clone(), opts.batch, opts.fuse, open, metrics.clone(), progress)?;
        let mut info = engine.info.clone();
        info.name = name.to_string();
        Ok(Lumen {
            inner: Arc::new(Inner {
                tx: engine.tx.clone(),
                processor: engine.processor.clone(),
                info,
                metrics,
                next_id: AtomicU64::new(0),
                default_max_tokens: opts.default_max_tokens.max(1),
                engine: Mutex::new(Some(engine)),
            }),
        })
    }

    /// The model's name, backend, device and limits.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The tokenizer, chat template and image settings.
    pub fn processor(&self) -> &Arc<Processor> {
        &self.inner.processor
    }

    /// Counters and latency histograms of every request so far.
    pub fn stats(&self) -> Snapshot {
        self.inner.metrics.snapshot()
    }

    /// The live counters (the HTTP server adds its own to them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Starts answering a conversation. Images are decoded and the prompt tokenized on the
    /// calling thread; an unusable image or a prompt that does not fit is an error here.
    pub fn generate(&self, messages: &[ChatMessage], opts: &GenerationOptions) -> Result<Generation> {
        let started = Instant::now();
        opts.validate()?;
        let prompt = request::prepare(&self.inner.processor, messages)?;
        let (tx, rx) = channel();
        let sink: Sink = Box::new(move |o: Out| tx.send(o).is_ok());
        let s = self.submit(prompt, opts, started, sink)?;
        let answer = Answer::new(&self.inner.processor.tokenizer, opts.stop.clone());
        Ok(Generation::new(rx, answer, s.cancel, s.prompt_tokens, started))
    }

    /// Hands a prepared prompt to the engine; its events (token ids) go to `events`. For
    /// callers that prepare prompts and decode tokens themselves (the HTTP server).
    pub fn submit(
        &self,
        prompt: PrefillInputs,
        opts: &GenerationOptions,
        received: Instant,
        events: Sink,
    ) -> Result<Submitted> {
        opts.validate()?;
        let inner = &self.inner;
        let limit = inner.info.context.min(inner.info.kv_tokens);
        let prompt_tokens = prompt.ids.len();
        let max_new_tokens = request::max_new_tokens(prompt_tokens, opts.max_tokens, limit, inner.default_max_tokens)?;
        let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
        let clock = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let sampling = opts.sampling(clock ^ id.rotate_left(32));
        let stop = if opts.ignore_eos { Vec::new() } else { inner.processor.stop_ids.clone() };
        let req = crate::engine::serve::Request { id, prompt, max_new_tokens, stop, sampling };
        inner
            .tx
            .send(Command::Submit { req, events, received })
            .map_err(|_| Error::Backend("the engine has stopped".into()))?;
        Ok(Submitted { cancel: CancelHandle::new(id, inner.tx.clone()), prompt_tokens, max_new_tokens })
    }

    /// Lets requests in flight run for at most `grace`, fails the rest, and stops the engine;
    /// later requests fail. [`join`](Self::join) waits for the end.
    pub fn shutdown(&self, grace: Duration) {
        let _ = self.inner.tx.send(Command::Shutdown { grace });
    }

    /// Waits until the engine thread has ended (after [`shutdown`](Self::shutdown)).
    pub fn join(&self) {
        let engine = self.inner.engine.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(e) = engine {
            e.join();
        }
    }
}
