//! Serving many requests: the interface a load generator drives (`submit` requests, `step`
//! the engine, collect `Event`s), and `Sequential`, the one-request-at-a-time engine over a
//! `Session` (the baseline a batching engine is measured against).

use super::sampler::{Sampler, SamplingOptions};
use super::{KvCache, Session};
use crate::model::qwen3_vl::PrefillInputs;
use crate::{Error, Result};
use std::collections::VecDeque;

/// One request: a prepared prompt (token ids and images) and how to answer it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Caller's id, echoed in every event of this request.
    pub id: u64,
    /// The prompt.
    pub prompt: PrefillInputs,
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Tokens that end the answer (not emitted).
    pub stop: Vec<u32>,
    /// Sampling (greedy by default).
    pub sampling: SamplingOptions,
}

/// Why a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new token of request `id` (the first one ends its prefill).
    Token {
        /// The request.
        id: u64,
        /// The token.
        token: u32,
    },
    /// Request `id` is complete.
    Done {
        /// The request.
        id: u64,
        /// Why.
        finish: Finish,
    },
    /// Request `id` failed alone (bad image, too long, ...); the others go on.
    Failed {
        /// The request.
        id: u64,
        /// What went wrong.
        error: String,
    },
}

/// An engine serving requests.
pub trait Serve {
    /// Queues a request (it starts when the engine has room).
    fn submit(&mut self, req: Request) -> Result<()>;
    /// Runs one engine step (one forward pass over what is in flight) and returns its events.
    /// An error here is the engine's own failure (a device error), not a request's.
    fn step(&mut self) -> Result<Vec<Event>>;
    /// Drops request `id` wherever it is (queued or in flight), freeing what it holds at
    /// once; no further events come for it. Returns whether it was found.
    fn cancel(&mut self, id: u64) -> bool;
    /// Requests queued or in flight.
    fn pending(&self) -> usize;
    /// A short description for reports ("sequential", "batched, 32 sequences").
    fn describe(&self) -> String;
}

struct Running<'b> {
    req: Request,
    cache: KvCache<'b>,
    sampler: Sampler,
    last: u32,
    produced: usize,
}

/// One request at a time: its prefill, then its decode steps, each a step.
pub struct Sequential<'s, 'b> {
    session: &'s mut Session<'b>,
    queue: VecDeque<Request>,
    current: Option<Running<'b>>,
}

impl<'s, 'b> Sequential<'s, 'b> {
    /// An engine over `session`.
    pub fn new(session: &'s mut Session<'b>) -> Self {
        Sequential { session, queue: VecDeque::new(), current: None }
    }

    fn start(&mut self, req: Request) -> Result<(Running<'b>, u32)> {
        super::fits_context(&self.session.model, req.prompt.ids.len(), req.max_new_tokens)?;
        let mut sampler = Sampler::new(req.sampling.clone())?;
        let pre = self.session.prefill(&req.prompt, false, false)?;
        let tok = sampler.pick(&pre.logits.to_f32());
        Ok((Running { req, cache: pre.cache, sampler, last: tok, produced: 0 }, tok))
    }

    /// Emits `tok` for the running request, or ends it; returns the events.
    fn emit(&mut self, mut run: Running<'b>, tok: u32) -> Vec<Event> {
        let id = run.req.id;
        if run.req.stop.contains(&tok) {
            return vec![Event::Done { id, finish: Finish::Stop }];
        }
        run.produced += 1;
        run.last = tok;
        let mut ev = vec![Event::Token { id, token: tok }];
        if run.produced >= run.req.max_new_tokens {
            ev.push(Event::Done { id, finish: Finish::Length });
        } else {
            self.current = Some(run);
        }
        ev
    }
}

impl Serve for Sequential<'_, '_> {
    fn submit(&mut self, req: Request) -> Result<()> {
        self.queue.push_back(req);
        Ok(())
    }

    fn step(&mut self) -> Result<Vec<Event>> {
        if let Some(mut run) = self.current.take() {
            let logits = self.session.decode(run.last, &mut run.cache)?;
            let tok = run.sampler.pick(&logits);
            return Ok(self.emit(run, tok));
        }
        if let Some(req) = self.queue.pop_front() {
            let id = req.id;
            if req.max_new_tokens == 0 {
                return Ok(vec![Event::Done { id, finish: Finish::Length }]);
            }
            match self.start(req) {
                Ok((run, tok)) => return Ok(self.emit(run, tok)),
                // A request's own fault fails it alone; a device error stops the engine.
                Err(e @ (Error::Backend(_) | Error::Io(_))) => return Err(e),
                Err(e) => return Ok(vec![Event::Failed { id, error: e.to_string() }]),
            }
        }
        Ok(Vec::new())
    }

    fn cancel(&mut self, id: u64) -> bool {
        if self.current.as_ref().is_some_and(|r| r.req.id == id) {
            self.current = None;
            return true;
        }
        let before = self.queue.len();
        self.queue.retain(|r| r.id != id);
        self.queue.len() != before
    }

    fn pending(&self) -> usize {
        self.queue.len() + self.current.is_some() as usize
    }

    fn describe(&self) -> String {
        "sequential (one request at a time)".into()
    }
}
