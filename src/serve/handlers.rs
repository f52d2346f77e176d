//! The HTTP endpoints: chat completions (one JSON answer, or server-sent events), models,
//! health and metrics. A handler checks and prepares a request, takes an admission slot,
//! hands the request to the engine thread and turns its events into the response; when the
//! client goes away its guard cancels the request in the engine at once.

use super::input;
use super::protocol::{self, ApiError, ChatRequest, Head};
use super::ServeConfig;
use crate::api::engine::{Out, Sink};
use crate::api::text::Answer;
use crate::api::{CancelHandle, Lumen};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// What every handler shares.
pub struct Shared {
    /// The model and its engine (tokenizer, limits, counters).
    pub lumen: Lumen,
    /// The server's settings.
    pub cfg: ServeConfig,
    /// Requests admitted and not yet finished.
    pub inflight: AtomicUsize,
    /// Set once shutdown began: new requests get 503.
    pub draining: AtomicBool,
    /// Unix time the server started.
    pub started: u64,
}

/// The router over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.body())).into_response()
}

async fn not_found() -> Response {
    error_response(&ApiError::new(404, "invalid_request_error", Some("not_found"), "no such endpoint"))
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": s.cfg.model_name, "object": "model", "created": s.started, "owned_by": "lumen",
                  "max_model_len": s.lumen.info().context.min(s.lumen.info().kv_tokens)}],
    }))
    .into_response()
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    if s.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"}))).into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    ([("content-type", "text/plain; version=0.0.4")], s.lumen.metrics().render()).into_response()
}

/// An admission slot, given back when dropped.
struct Slot(Arc<Shared>);

impl Slot {
    fn take(s: &Arc<Shared>) -> Result<Slot, ApiError> {
        if s.draining.load(Ordering::SeqCst) {
            return Err(ApiError::new(503, "server_error", Some("shutting_down"), "the server is shutting down"));
        }
        let cap = s.cfg.batch.max_seqs + s.cfg.max_queue;
        let before = s.inflight.fetch_add(1, Ordering::SeqCst);
        if before >= cap {
            s.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                429,
                "rate_limit_error",
                Some("queue_full"),
                format!(
                    "the server is at capacity ({} requests running or queued, {} sequences at once + a queue of {}); \
                     retry later",
                    cap, s.cfg.batch.max_seqs, s.cfg.max_queue
                ),
            ));
        }
        Ok(Slot(s.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request in the engine; dropping it before the engine finished cancels it there.
struct Ticket {
    cancel: CancelHandle,
    finished: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel.cancel();
        }
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let (mut buf, mut seen) = (Vec::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > limit.saturating_add(64 << 20) {
            // Past this, stop reading: the connection is dropped after the answer.
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            413,
            "invalid_request_error",
            Some("request_too_large"),
            format!("the request body is over the server's limit of {limit} bytes"),
        ));
    }
    Ok(buf)
}

async fn chat(State(s): State<Arc<Shared>>, body: Body) -> Response {
    let received = Instant::now();
    match start(&s, body, received).await {
        Ok(r) => r,
        Err(e) => {
            let rejected = matches!(e.status, 429 | 503);
            s.lumen.metrics().update(|m| if rejected { m.rejected += 1 } else { m.invalid += 1 });
            error_response(&e)
        }
    }
}

/// A request handed to the engine, with what the response needs.
struct Started {
    req: ChatRequest,
    head: Head,
    prompt: usize,
    events: UnboundedReceiver<Out>,
    ticket: Ticket,
    slot: Slot,
}

async fn start(s: &Arc<Shared>, body: Body, received: Instant) -> Result<Response, ApiError> {
    let bytes = read_body(body, s.cfg.max_body_bytes).await?;
    let req = protocol::parse(&bytes)?;
    drop(bytes);
    let slot = Slot::take(s)?;
    let (proc, allow) = (s.lumen.processor().clone(), s.cfg.allow_local_files);
    let (req, prompt) = tokio::task::spawn_blocking(move || {
        let p = input::prepare(&proc, &req, allow);
        (req, p)
    })
    .await
    .map_err(|e| ApiError::new(500, "server_error", None, format!("preparing the prompt failed: {e}")))?;
    let prompt = prompt?;
    let info = s.lumen.info();
    let limit = info.context.min(info.kv_tokens);
    input::max_new_tokens(&req, prompt.ids.len(), limit, s.cfg.default_max_tokens)?;
    let (tx, events) = unbounded_channel();
    let sink: Sink = Box::new(move |o: Out| tx.send(o).is_ok());
    let submitted = s.lumen.submit(prompt, &req.options, received, sink).map_err(|e| match e {
        crate::Error::Input(m) => ApiError::bad_request(m),
        other => ApiError::new(503, "server_error", None, other.to_string()),
    })?;
    let n_prompt = submitted.prompt_tokens;
    let ticket = Ticket { cancel: submitted.cancel, finished: false };
    let head =
        Head { id: format!("chatcmpl-{}", ticket.cancel.id()), created: unix_now(), model: s.cfg.model_name.clone() };
    let run = Started { req, head, prompt: n_prompt, events, ticket, slot };
    if run.req.stream {
        Ok(stream(s.clone(), run))
    } else {
        complete(s, run).await
    }
}

fn aborted(e: String) -> ApiError {
    ApiError::new(503, "server_error", None, e)
}

async fn complete(s: &Arc<Shared>, mut run: Started) -> Result<Response, ApiError> {
    let mut answer = Answer::new(&s.lumen.processor().tokenizer, run.req.options.stop.clone());
    let mut text = String::new();
    let finish = loop {
        match run.events.recv().await {
            Some(Out::Token(t)) => {
                let (piece, stopped) = answer.push(t);
                text += &piece;
                if stopped {
                    break "stop";
                }
            }
            Some(Out::Done(f)) => {
                run.ticket.finished = true;
                text += &answer.finish();
                break protocol::finish_reason(f);
            }
            Some(Out::Failed(e)) => {
                run.ticket.finished = true;
                return Err(ApiError::bad_request(e));
            }
            Some(Out::Aborted(e)) => {
                run.ticket.finished = true;
                return Err(aborted(e));
            }
            None => return Err(aborted("the engine has stopped".into())),
        }
    };
    Ok(Json(run.head.completion(&text, finish, run.prompt, answer.tokens)).into_response())
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

fn stream(s: Arc<Shared>, run: Started) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let Started { req, head, prompt, mut events, mut ticket, slot } = run;
        let _slot = slot;
        let usage = req.include_usage;
        let mut answer = Answer::new(&s.lumen.processor().tokenizer, req.options.stop.clone());
        let mut out = vec![data(&head.chunk(json!({"role": "assistant", "content": ""}), None, usage))];
        loop {
            for ev in out.drain(..) {
                // The client went away: dropping the ticket cancels the request in the engine.
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            let ev = tokio::select! {
                ev = events.recv() => ev,
                _ = tx.closed() => return,
            };
            let (finish, delta) = match ev {
                Some(Out::Token(t)) => {
                    let (piece, stopped) = answer.push(t);
                    out.push(data(&head.chunk(json!({"content": piece}), None, usage)));
                    if !stopped {
                        continue;
                    }
                    ("stop", json!({}))
                }
                Some(Out::Done(f)) => {
                    ticket.finished = true;
                    // Text held back (an incomplete character) goes with the finish reason, so
                    // there is exactly one chunk per token before it.
                    let rest = answer.finish();
                    let delta = if rest.is_empty() { json!({}) } else { json!({"content": rest}) };
                    (protocol::finish_reason(f), delta)
                }
                Some(Out::Failed(e)) => {
                    ticket.finished = true;
                    out.push(data(&ApiError::bad_request(e).body()));
                    break;
                }
                Some(Out::Aborted(e)) => {
                    ticket.finished = true;
                    out.push(data(&aborted(e).body()));
                    break;
                }
                None => {
                    out.push(data(&aborted("the engine has stopped".into()).body()));
                    break;
                }
            };
            out.push(data(&head.chunk(delta, Some(finish), usage)));
            if usage {
                out.push(data(&head.usage_chunk(prompt, answer.tokens)));
            }
            break;
        }
        out.push(SseEvent::default().data("[DONE]"));
        for ev in out {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        // A stop string ended the answer early: the ticket, dropped here, cancels the rest.
    });
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx)) },
        );
    Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
