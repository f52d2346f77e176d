//! `lumen serve`: an OpenAI-compatible HTTP server (chat completions with images, streaming,
//! models, health, Prometheus metrics) over the batching engine, which runs on one thread.
//!
//! [`protocol`] reads requests and writes responses, [`input`] turns them into model inputs,
//! [`handlers`] are the endpoints over a [`Lumen`] (the embedding API's engine thread,
//! detokenization and counters); [`client`] is a small HTTP client for the bench and the
//! tests.

pub mod client;
pub mod handlers;
pub mod input;
pub mod protocol;

use crate::api::engine::Opener;
use crate::api::{LoadOptions, Lumen};
use crate::engine::batch::BatchOptions;
use crate::{Error, Result};
use handlers::Shared;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Options of `lumen serve` (the model options come from the caller).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default: the server has no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// auto, cuda, wgpu or cpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Most sequences the engine runs at once.
    #[arg(long, default_value_t = 32)]
    pub max_num_seqs: usize,
    /// Most requests waiting beyond those running; past it requests get 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Most new tokens per engine step (decode tokens plus prompt chunks).
    #[arg(long, default_value_t = 2048)]
    pub token_budget: usize,
    /// KV cache blocks (0: room for every sequence to reach 1,024 tokens).
    #[arg(long, default_value_t = 0)]
    pub kv_blocks: usize,
    /// New tokens when a request gives no max_tokens.
    #[arg(long, default_value_t = 512)]
    pub default_max_tokens: usize,
    /// Largest request body, MiB (images travel inline, base64).
    #[arg(long, default_value_t = 32)]
    pub max_body_mb: usize,
    /// Accept file:// image URLs (paths on the server's machine).
    #[arg(long)]
    pub allow_local_files: bool,
    /// The model name /v1/models reports and responses carry (default: the model's).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Seconds in-flight requests may run after SIGINT/SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_grace: f64,
}

/// Everything the server needs besides the model.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    pub host: String,
    /// Port (0: any free one).
    pub port: u16,
    /// Backend name for [`crate::backend::select`].
    pub backend: String,
    /// Engine limits.
    pub batch: BatchOptions,
    /// Requests that may wait beyond `batch.max_seqs`.
    pub max_queue: usize,
    /// New tokens when a request names none.
    pub default_max_tokens: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Accept file:// image URLs.
    pub allow_local_files: bool,
    /// The model's name in responses.
    pub model_name: String,
    /// How long in-flight requests may run after shutdown begins.
    pub shutdown_grace: Duration,
    /// Shut down on SIGINT / SIGTERM (the command line; not an embedded server).
    pub handle_signals: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8000,
            backend: "auto".into(),
            batch: BatchOptions { max_seqs: 32, token_budget: 2048, ..Default::default() },
            max_queue: 256,
            default_max_tokens: 512,
            max_body_bytes: 32 << 20,
            allow_local_files: false,
            model_name: "lumen".into(),
            shutdown_grace: Duration::from_secs(30),
            handle_signals: false,
        }
    }
}

impl ServeArgs {
    /// The configuration these options give, `model_name` unless the options name one.
    pub fn config(&self, model_name: &str) -> Result<ServeConfig> {
        if self.max_num_seqs == 0 {
            return Err(Error::Input("--max-num-seqs must be at least 1".into()));
        }
        if !(self.shutdown_grace.is_finite() && self.shutdown_grace >= 0.0) {
            return Err(Error::Input(format!("--shutdown-grace must be seconds >= 0, got {}", self.shutdown_grace)));
        }
        Ok(ServeConfig {
            host: self.host.clone(),
            port: self.port,
            backend: self.backend.clone(),
            batch: BatchOptions {
                max_seqs: self.max_num_seqs,
                token_budget: self.token_budget,
                kv_blocks: self.kv_blocks,
                ..Default::default()
            },
            max_queue: self.max_queue,
            default_max_tokens: self.default_max_tokens.max(1),
            max_body_bytes: self.max_body_mb.max(1) << 20,
            allow_local_files: self.allow_local_files,
            model_name: self.served_model_name.clone().unwrap_or_else(|| model_name.to_string()),
            shutdown_grace: Duration::from_secs_f64(self.shutdown_grace),
            handle_signals: true,
        })
    }
}

/// A running server: the engine thread and the HTTP thread.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The engine's description and backend.
    pub engine: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<JoinHandle<Result<()>>>,
}

/// Resolves when SIGINT or SIGTERM arrives (never when signals are not handled).
async fn signal(handle: bool) {
    if !handle {
        return std::future::pending().await;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

impl Server {
    /// Loads the model on the engine thread, binds the address and starts serving.
    pub fn start(cfg: ServeConfig, open: Opener) -> Result<Server> {
        let listener = std::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
            .map_err(|e| Error::Io(format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
        let addr = listener.local_addr().map_err(|e| Error::Io(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| Error::Io(e.to_string()))?;
        let opts = LoadOptions {
            backend: cfg.backend.clone(),
            batch: cfg.batch,
            fuse: true,
            default_max_tokens: cfg.default_max_tokens,
            // The opener quantizes (it builds the model).
            quantize: None,
        };
        let lumen = Lumen::from_opener(&cfg.model_name, open, &opts, Box::new(|_| {}))?;
        let describe = format!("{}; {}", lumen.info().describe, lumen.info().backend);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("lumen-http")
            .build()
            .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            lumen: lumen.clone(),
            cfg,
            inflight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            started: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
        let http = std::thread::Builder::new()
            .name("lumen-http".into())
            .spawn(move || {
                let result = rt.block_on(async {
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Io(e.to_string()))?;
                    let s = shared.clone();
                    let shutdown = async move {
                        tokio::select! {
                            _ = stop_rx => {}
                            _ = signal(s.cfg.handle_signals) => eprintln!("lumen serve: shutting down"),
                        }
                        s.draining.store(true, Ordering::SeqCst);
                        s.lumen.shutdown(s.cfg.shutdown_grace);
                    };
                    axum::serve(listener, handlers::router(shared.clone()))
                        .with_graceful_shutdown(shutdown)
                        .await
                        .map_err(|e| Error::Io(format!("the HTTP server failed: {e}")))
                });
                // The engine ends once what was in flight is done (or the grace period ran out).
                lumen.shutdown(Duration::ZERO);
                drop(shared);
                lumen.join();
                result
            })
            .map_err(|e| Error::Io(format!("cannot start the HTTP thread: {e}")))?;
        Ok(Server { addr, engine: describe, stop: Some(stop_tx), http: Some(http) })
    }

    /// Shuts down gracefully: no new requests, in-flight ones finish within the grace period.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait_inner()
    }

    /// Serves until SIGINT or SIGTERM (with `handle_signals`) and the shutdown that follows.
    pub fn wait(mut self) -> Result<()> {
        self.wait_inner()
    }

    fn wait_inner(&mut self) -> Result<()> {
        match self.http.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::Backend("the HTTP thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.wait_inner();
    }
}

/// `lumen serve`: starts the server and serves until a signal.
pub fn run(args: &ServeArgs, model_name: &str, open: Opener) -> Result<()> {
    let cfg = args.config(model_name)?;
    let server = Server::start(cfg, open)?;
    eprintln!("lumen serve: {}", server.engine);
    eprintln!("lumen serve: listening on http://{} (OpenAI API at /v1)", server.addr);
    server.wait()
}
