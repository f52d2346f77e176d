//! An answer being generated: an iterator of text pieces (whole characters, stop strings
//! honoured) that any thread can cancel.

use super::engine::{Command, Out};
use super::text::Answer;
use crate::engine::serve::Finish;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended it, or a stop string did.
    Stop,
    /// The token limit was reached.
    Length,
    /// It was cancelled.
    Cancelled,
}

impl From<Finish> for FinishReason {
    fn from(f: Finish) -> Self {
        match f {
            Finish::Stop => FinishReason::Stop,
            Finish::Length => FinishReason::Length,
        }
    }
}

/// Cancels a request from any thread; cheap to clone.
#[derive(Clone)]
pub struct CancelHandle {
    id: u64,
    engine: Sender<Command>,
    cancelled: Arc<AtomicBool>,
}

impl CancelHandle {
    pub(crate) fn new(id: u64, engine: Sender<Command>) -> Self {
        CancelHandle { id, engine, cancelled: Arc::new(AtomicBool::new(false)) }
    }

    /// Stops the request: the engine drops it at its next step and frees what it holds; its
    /// [`Generation`] ends with [`FinishReason::Cancelled`]. Cancelling twice, or after the
    /// end, does nothing.
    pub fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            self.release();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The request's id in the engine.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Tells the engine to drop the request (it may already have ended: then nothing happens).
    pub(crate) fn release(&self) {
        let _ = self.engine.send(Command::Cancel(self.id));
    }
}

/// An answer being generated. Iterate it for text pieces as they are produced (an `Err` item
/// is this request's failure and the last item); [`text`](Self::text) waits for the whole
/// answer. Dropping it before the end cancels the request.
pub struct Generation {
    events: Receiver<Out>,
    answer: Answer,
    cancel: CancelHandle,
    prompt_tokens: usize,
    finish: Option<FinishReason>,
    ended: bool,
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens of the prompt (images included).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

impl Generation {
    pub(crate) fn new(
        events: Receiver<Out>,
        answer: Answer,
        cancel: CancelHandle,
        prompt_tokens: usize,
        started: Instant,
    ) -> Self {
        Generation {
            events,
            answer,
            cancel,
            prompt_tokens,
            finish: None,
            ended: false,
            started,
            first: None,
            last: None,
        }
    }

    /// From the call to its first token (images decoded, prompt processed).
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.first.map(|f| f - self.started)
    }

    /// Tokens per second after the first (decode speed); `None` before the second token.
    pub fn decode_tokens_per_second(&self) -> Option<f64> {
        let (first, last) = (self.first?, self.last?);
        let secs = (last - first).as_secs_f64();
        (self.answer.tokens > 1 && secs > 0.0).then(|| (self.answer.tokens - 1) as f64 / secs)
    }

    /// A handle that cancels this request from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Cancels this request (see [`CancelHandle::cancel`]).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Why the answer ended; `None` while it goes on (or when it failed).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Tokens of the prompt (images included).
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Tokens generated so far.
    pub fn completion_tokens(&self) -> usize {
        self.answer.tokens
    }

    /// Waits for the whole answer.
    pub fn text(mut self) -> Result<Completion> {
        let mut text = String::new();
        for piece in self.by_ref() {
            text += &piece?;
        }
        Ok(Completion {
            text,
            finish: self.finish.unwrap_or(FinishReason::Cancelled),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.answer.tokens,
        })
    }

    fn end(&mut self, finish: Option<FinishReason>) {
        self.ended = true;
        self.finish = finish;
    }
}

impl Iterator for Generation {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        loop {
            if self.ended {
                return None;
            }
            if self.cancel.is_cancelled() {
                self.end(Some(FinishReason::Cancelled));
                return None;
            }
            let piece = match self.events.recv() {
                Ok(Out::Token(t)) => {
                    let now = Instant::now();
                    self.first.get_or_insert(now);
                    self.last = Some(now);
                    let (piece, stopped) = self.answer.push(t);
                    if stopped {
                        // A stop string: the engine need not go on.
                        self.cancel.release();
                        self.end(Some(FinishReason::Stop));
                    }
                    piece
                }
                Ok(Out::Done(f)) => {
                    self.end(Some(f.into()));
                    self.answer.finish()
                }
                Ok(Out::Failed(e)) => {
                    self.end(None);
                    return Some(Err(Error::Input(e)));
                }
                Ok(Out::Aborted(e)) => {
                    self.end(None);
                    return Some(Err(Error::Backend(e)));
                }
                Err(_) if self.cancel.is_cancelled() => {
                    self.end(Some(FinishReason::Cancelled));
                    return None;
                }
                Err(_) => {
                    self.end(None);
                    return Some(Err(Error::Backend("the engine stopped".into())));
                }
            };
            if !piece.is_empty() {
                return Some(Ok(piece));
            }
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.ended {
            self.cancel.release();
        }
    }
}
