//! The threads behind the window: loading the model, opening an image, generating an answer.
//! Each reports over one channel and wakes the window; none of them lets a panic out.

use crate::picture::{self, Picture};
use eframe::egui::{ColorImage, Context};
use lumen::api::request::plain;
use lumen::ModelSource;
use lumen::{CancelHandle, ChatMessage, Content, FinishReason, GenerationOptions, LoadOptions, LoadProgress, Lumen};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the threads report.
pub enum Event {
    /// The model is this far along.
    Progress(LoadProgress),
    /// The model is loaded, or could not be.
    Loaded(Result<Lumen, String>),
    /// An image is open, or could not be.
    Opened(Result<Picture, String>),
    /// The next piece of answer `job`.
    Piece { job: u64, text: String },
    /// Answer `job` has ended (an `Err`: it failed; the pieces so far stay).
    Finished { job: u64, result: Result<Stats, String> },
    /// The window's pixels, as asked for.
    Screenshot(Arc<ColorImage>),
}

/// How an answer went.
#[derive(Debug, Clone)]
pub struct Stats {
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    pub tokens: usize,
    pub tokens_per_second: Option<f64>,
    pub first_token: Option<Duration>,
    pub elapsed: Duration,
}

/// Sends events to the window and wakes it.
#[derive(Clone)]
pub struct Notifier {
    tx: Sender<Event>,
    ctx: Context,
}

impl Notifier {
    pub fn new(ctx: Context) -> (Notifier, Receiver<Event>) {
        let (tx, rx) = channel();
        (Notifier { tx, ctx }, rx)
    }

    /// Whether the window still listens.
    pub fn send(&self, event: Event) -> bool {
        let ok = self.tx.send(event).is_ok();
        self.ctx.request_repaint();
        ok
    }
}

/// Runs `f`, turning a panic into an error message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
        Err(format!("internal error: {}", what.unwrap_or_else(|| "a worker thread panicked".into())))
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    std::thread::Builder::new().name(name.into()).spawn(f).map(drop).map_err(|e| format!("cannot start a thread: {e}"))
}

/// Loads the model on a thread of its own, reporting progress.
pub fn load(source: ModelSource, backend: String, n: Notifier) -> Result<(), String> {
    spawn("lumen-load", move || {
        let progress = n.clone();
        let opts = LoadOptions { backend, ..Default::default() };
        let loaded = guarded(|| {
            Lumen::load_with_progress(&source, &opts, move |p| {
                progress.send(Event::Progress(p));
            })
            .map_err(plain)
        });
        n.send(Event::Loaded(loaded));
    })
}

/// Opens an image on a thread.
pub fn open(path: PathBuf, n: Notifier) -> Result<(), String> {
    spawn("lumen-open", move || {
        n.send(Event::Opened(guarded(|| picture::open(&path))));
    })
}

/// A question for the model.
pub struct Question {
    pub image: Option<Vec<u8>>,
    pub text: String,
    pub max_tokens: usize,
}

#[derive(Default)]
struct CancelState {
    requested: bool,
    handle: Option<CancelHandle>,
}

/// An answer being generated.
pub struct Job {
    pub id: u64,
    cancel: Arc<Mutex<CancelState>>,
}

fn lock(m: &Mutex<CancelState>) -> MutexGuard<'_, CancelState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Job {
    /// Stops the answer (now, or as soon as it has started).
    pub fn cancel(&self) {
        let mut c = lock(&self.cancel);
        c.requested = true;
        if let Some(h) = &c.handle {
            h.cancel();
        }
    }

    pub fn cancel_requested(&self) -> bool {
        lock(&self.cancel).requested
    }
}

/// Generates the answer to `q` on a thread; its pieces arrive as [`Event::Piece`].
pub fn ask(lumen: Lumen, q: Question, id: u64, n: Notifier) -> Result<Job, String> {
    let cancel = Arc::new(Mutex::new(CancelState::default()));
    let state = cancel.clone();
    spawn("lumen-answer", move || {
        let result = guarded(|| {
            let started = Instant::now();
            let mut content = Vec::new();
            if let Some(bytes) = q.image {
                content.push(Content::image_bytes(bytes));
            }
            content.push(Content::text(q.text));
            let opts = GenerationOptions { max_tokens: Some(q.max_tokens), ..Default::default() };
            // Decodes the image and tokenizes the prompt here, off the window's thread.
            let mut gen = lumen.generate(&[ChatMessage::user(content)], &opts).map_err(plain)?;
            {
                let mut c = lock(&state);
                c.handle = Some(gen.cancel_handle());
                if c.requested {
                    gen.cancel();
                }
            }
            let stop = gen.cancel_handle();
            for piece in &mut gen {
                if !n.send(Event::Piece { job: id, text: piece.map_err(plain)? }) {
                    stop.cancel(); // the window has closed
                }
            }
            Ok(Stats {
                finish: gen.finish_reason().unwrap_or(FinishReason::Cancelled),
                prompt_tokens: gen.prompt_tokens(),
                tokens: gen.completion_tokens(),
                tokens_per_second: gen.decode_tokens_per_second(),
                first_token: gen.time_to_first_token(),
                elapsed: started.elapsed(),
            })
        });
        n.send(Event::Finished { job: id, result });
    })?;
    Ok(Job { id, cancel })
}
