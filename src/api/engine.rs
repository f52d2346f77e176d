//! The engine thread: it creates the backend, the model, the session and the batching engine
//! (device state never leaves it), takes commands over a channel (submit, cancel, shut down)
//! and hands each request's events to that request's own sink. It steps while anything is
//! pending and blocks on the channel when idle.

use super::metrics::Metrics;
use crate::backend::select;
use crate::compile::Options as CompileOptions;
use crate::engine::batch::{BatchOptions, Batched};
use crate::engine::serve::{Event, Finish, Request, Serve};
use crate::engine::Session;
use crate::model::processor::Processor;
use crate::model::qwen3_vl::Qwen3VL;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the engine tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A new token.
    Token(u32),
    /// The answer is complete.
    Done(Finish),
    /// The request failed alone (its own fault).
    Failed(String),
    /// The engine failed or is shutting down: not the request's fault.
    Aborted(String),
}

/// Where a request's events go; `false` means nobody listens any more (the request is then
/// cancelled). Called on the engine thread: it must not block.
pub type Sink = Box<dyn FnMut(Out) -> bool + Send>;

/// What callers ask of the engine.
pub enum Command {
    /// Start a request; its events go to `events`.
    Submit {
        /// The request.
        req: Request,
        /// Its events.
        events: Sink,
        /// When the request arrived (latencies count from here).
        received: Instant,
    },
    /// Drop a request at once (its caller cancelled or went away), freeing its KV blocks.
    Cancel(u64),
    /// Stop: finish what is in flight within `grace`, cancel the rest, end the thread.
    Shutdown {
        /// How long in-flight requests may still run.
        grace: Duration,
    },
}

/// Opens the model and its processor (on the engine thread).
pub type Opener = Box<dyn FnOnce() -> Result<(Qwen3VL, Processor)> + Send>;

/// Where loading has got to.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadProgress {
    /// Picking the backend.
    SelectingBackend,
    /// Reading the checkpoint (or building synthetic weights) on `backend`.
    Reading {
        /// The backend's one-line reason for being chosen.
        backend: String,
    },
    /// Weights on the device so far.
    Uploading {
        /// Tensors uploaded.
        done: usize,
        /// Tensors in all.
        total: usize,
    },
    /// Building the batching engine (KV cache, first compilation).
    Starting,
}

/// Reports loading progress (called on the engine thread).
pub type Progress = Box<dyn FnMut(LoadProgress) + Send>;

/// A loaded model: its name, where it runs and its limits.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The model's name (its directory's, or `synthetic-PRESET`).
    pub name: String,
    /// The model's context length.
    pub context: usize,
    /// The most tokens (prompt + answer) one sequence can hold in the KV cache.
    pub kv_tokens: usize,
    /// The engine's description.
    pub describe: String,
    /// The backend's one-line reason.
    pub backend: String,
    /// The backend's kind (`cuda`, `wgpu`, `cpu`).
    pub backend_kind: String,
    /// The device's name.
    pub device: String,
    /// Weight bytes by format and what a decode token reads (see `Qwen3VL::weight_summary`).
    pub weights: String,
}

/// A running engine thread.
pub struct Engine {
    /// Commands.
    pub tx: Sender<Command>,
    /// Limits and description.
    pub info: ModelInfo,
    /// The tokenizer, template and image settings (shared with the handlers).
    pub processor: Arc<Processor>,
    thread: JoinHandle<()>,
}

impl Engine {
    /// Starts the thread and waits until the model is on the device.
    pub fn start(
        backend: String,
        opts: BatchOptions,
        fuse: bool,
        open: Opener,
        metrics: Arc<Metrics>,
        mut progress: Progress,
    ) -> Result<Engine> {
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = channel();
        let thread = std::thread::Builder::new()
            .name("lumen-engine".into())
            .spawn(move || {
                progress(LoadProgress::SelectingBackend);
                let sel = match select(&backend) {
                    Ok(s) => s,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                progress(LoadProgress::Reading { backend: sel.reason.clone() });
                let (model, processor) = match open() {
                    Ok(mp) => mp,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let context = model.config.text.max_position_embeddings;
                let weights = model.weight_summary();
                let mut session = Session::new(sel.backend.as_ref(), model);
                session.set_compile_options(CompileOptions { fuse });
                let engine = session
                    .upload_all(|done, total| progress(LoadProgress::Uploading { done, total }))
                    .and_then(|_| {
                        progress(LoadProgress::Starting);
                        Batched::new(&mut session, opts)
                    });
                let mut engine = match engine {
                    Ok(e) => e,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let (_, total) = engine.blocks();
                let info = ModelInfo {
                    name: String::new(),
                    context,
                    kv_tokens: total * opts.block_size,
                    describe: engine.describe(),
                    backend: sel.reason.clone(),
                    backend_kind: sel.backend.info().backend.to_string(),
                    device: sel.backend.info().name.clone(),
                    weights,
                };
                metrics.update(|m| m.kv_blocks_total = total);
                if ready_tx.send(Ok((info, Arc::new(processor)))).is_ok() {
                    Loop { engine: &mut engine, live: HashMap::new(), metrics }.run(rx);
                }
            })
            .map_err(|e| Error::Io(format!("cannot start the engine thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok((info, processor))) => Ok(Engine { tx, info, processor, thread }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Backend("the engine thread stopped while loading the model".into())),
        }
    }

    /// Waits for the thread to end (after a shutdown command).
    pub fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// A request in the engine.
struct Live {
    events: Sink,
    received: Instant,
    first: Option<Instant>,
    tokens: usize,
}

struct Loop<'e, 's, 'b> {
    engine: &'e mut Batched<'s, 'b>,
    live: HashMap<u64, Live>,
    metrics: Arc<Metrics>,
}

impl Loop<'_, '_, '_> {
    fn run(mut self, rx: Receiver<Command>) {
        let mut deadline: Option<Instant> = None;
        loop {
            if self.engine.pending() == 0 {
                if deadline.is_some() {
                    break;
                }
                match rx.recv() {
                    Ok(c) => self.command(c, &mut deadline),
                    Err(_) => break,
                }
            }
            while let Ok(c) = rx.try_recv() {
                self.command(c, &mut deadline);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.fail_all("the engine is shutting down");
                break;
            }
            if self.engine.pending() > 0 {
                match self.engine.step() {
                    Ok(events) => self.route(events),
                    Err(e) => self.fail_all(&format!("engine error: {e}")),
                }
            }
            self.gauges();
        }
        self.gauges();
    }

    fn command(&mut self, c: Command, deadline: &mut Option<Instant>) {
        match c {
            Command::Submit { req, events, received } => {
                let id = req.id;
                let prompt = req.prompt.ids.len();
                if let Err(e) = self.engine.submit(req) {
                    let mut events = events;
                    events(Out::Failed(e.to_string()));
                    self.metrics.update(|m| m.failed += 1);
                    return;
                }
                self.metrics.update(|m| m.prompt_tokens += prompt as u64);
                self.live.insert(id, Live { events, received, first: None, tokens: 0 });
            }
            Command::Cancel(id) => self.cancel(id),
            Command::Shutdown { grace } => {
                let d = Instant::now() + grace;
                *deadline = Some(deadline.map_or(d, |old| old.min(d)));
            }
        }
    }

    fn cancel(&mut self, id: u64) {
        if self.live.remove(&id).is_some() {
            self.engine.cancel(id);
            self.metrics.update(|m| m.cancelled += 1);
        }
    }

    fn fail_all(&mut self, why: &str) {
        let ids: Vec<u64> = self.live.keys().copied().collect();
        let n = ids.len() as u64;
        self.metrics.update(|m| m.failed += n);
        for id in ids {
            self.engine.cancel(id);
            if let Some(mut l) = self.live.remove(&id) {
                (l.events)(Out::Aborted(why.to_string()));
            }
        }
    }

    fn route(&mut self, events: Vec<Event>) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for ev in events {
            let (Event::Token { id, .. } | Event::Done { id, .. } | Event::Failed { id, .. }) = ev;
            let Some(l) = self.live.get_mut(&id) else { continue };
            let out = match ev {
                Event::Token { token, .. } => {
                    if l.first.is_none() {
                        l.first = Some(now);
                        let ttft = (now - l.received).as_secs_f64();
                        self.metrics.update(|m| m.ttft.observe(ttft));
                    }
                    l.tokens += 1;
                    self.metrics.update(|m| m.generation_tokens += 1);
                    Out::Token(token)
                }
                Event::Done { finish, .. } => {
                    let mut l = self.live.remove(&id).expect("live request");
                    let e2e = (now - l.received).as_secs_f64();
                    self.metrics.update(|m| {
                        m.completed += 1;
                        m.e2e.observe(e2e);
                        if let (Some(first), true) = (l.first, l.tokens > 1) {
                            m.tpot.observe((now - first).as_secs_f64() / (l.tokens - 1) as f64);
                        }
                    });
                    (l.events)(Out::Done(finish));
                    continue;
                }
                Event::Failed { error, .. } => {
                    let mut l = self.live.remove(&id).expect("live request");
                    self.metrics.update(|m| m.failed += 1);
                    (l.events)(Out::Failed(error));
                    continue;
                }
            };
            if !(l.events)(out) {
                gone.push(id);
            }
        }
        // A client whose channel closed went away: free its sequence now.
        for id in gone {
            self.cancel(id);
        }
    }

    fn gauges(&self) {
        let (free, total) = self.engine.blocks();
        let running = self.live.values().filter(|l| l.first.is_some()).count();
        let waiting = self.engine.pending().saturating_sub(running);
        self.metrics.update(|m| {
            m.kv_blocks_used = total - free;
            m.running = running;
            m.waiting = waiting;
        });
    }
}
