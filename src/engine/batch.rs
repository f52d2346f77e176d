//! The batching engine: many sequences in flight, one forward pass per step over a mix of
//! decode tokens and prompt chunks (continuous batching with chunked prefill under a token
//! budget and a maximum number of sequences), keys and values in a paged cache (blocks lent
//! per sequence, attention through block tables), admission when the cache has room,
//! preemption (free the blocks, recompute later) when it runs out, the images of the
//! requests admitted together encoded in one vision pass. A request that cannot be served
//! (too long, bad tokens) fails alone.

use super::kv::{BlockPool, KvPools};
use super::sampler::Sampler;
use super::serve::{Event, Finish, Request, Serve};
use super::Session;
use crate::exec::Executor;
use crate::graph::TensorDesc;
use crate::model::qwen3_vl::positions::rope_index;
use crate::model::qwen3_vl::{BatchGraph, BatchItem, PoolShape, StepImages, VisionGraph};
use crate::{Error, HostTensor, Result};
use std::collections::VecDeque;

/// How the engine batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most sequences in flight.
    pub max_seqs: usize,
    /// Most new tokens per step (decode tokens + prompt chunk tokens).
    pub token_budget: usize,
    /// Cache slots per block.
    pub block_size: usize,
    /// Cache blocks in all (0: room for every sequence to reach 1,024 tokens).
    pub kv_blocks: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { max_seqs: 8, token_budget: 512, block_size: 16, kv_blocks: 0 }
    }
}

/// Most image patches in one vision pass (measured on the CPU oracle with 32 small images:
/// one pass of ~3,000 patches took 10.4 s, passes of at most 1,024 took 1.4 s).
const VISION_PATCHES: usize = 1024;

/// A request's image features, on the host (encoded once, kept across preemptions).
struct Features {
    embeds: HostTensor,
    deepstack: Vec<HostTensor>,
}

struct Seq {
    req: Request,
    /// Prompt, then every token emitted so far.
    tokens: Vec<u32>,
    positions: Vec<[u32; 3]>,
    rope_delta: i64,
    /// Per prompt token, its row of the image features (image tokens only).
    image_row: Vec<Option<usize>>,
    features: Option<Features>,
    blocks: Vec<u32>,
    /// Tokens whose keys and values are in the cache.
    cached: usize,
    sampler: Sampler,
    produced: usize,
}

impl Seq {
    fn position(&self, k: usize) -> [u32; 3] {
        match self.positions.get(k) {
            Some(p) => *p,
            None => [(k as i64 + self.rope_delta).max(0) as u32; 3],
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Forward passes.
    pub steps: usize,
    /// Sequences preempted (blocks freed, recomputed later).
    pub preemptions: usize,
    /// Most sequences in one step.
    pub peak_batch: usize,
    /// Steps whose graph had the previous step's structure and was retyped, not compiled.
    pub retyped_steps: usize,
}

/// The batching engine over a session's weights.
pub struct Batched<'s, 'b> {
    session: &'s mut Session<'b>,
    opts: BatchOptions,
    blocks: BlockPool,
    pools: KvPools<'b>,
    waiting: VecDeque<Seq>,
    queued: VecDeque<Request>,
    running: Vec<Seq>,
    stats: BatchStats,
    /// The last step's compiled graph (steady-state decode steps repeat its structure).
    compiled: crate::compile::StepCache,
}

/// Row `r` of each `(tensor, r)`, stacked (the tensors share dtype and row shape).
fn gather_rows(rows: &[(&HostTensor, usize)]) -> Result<HostTensor> {
    let Some((first, _)) = rows.first() else {
        return Err(Error::Data("no rows to gather".into()));
    };
    let mut bytes = Vec::new();
    for (t, r) in rows {
        let row = t.bytes.len() / t.desc.shape.0.first().copied().unwrap_or(0).max(1);
        bytes.extend_from_slice(&t.bytes[r * row..(r + 1) * row]);
    }
    let mut dims = first.desc.shape.0.clone();
    dims[0] = rows.len();
    HostTensor::from_bytes(TensorDesc::new(first.desc.dtype, dims), bytes)
}

/// Rows `rows` of `t`.
fn rows_of(t: &HostTensor, rows: std::ops::Range<usize>) -> Result<HostTensor> {
    gather_rows(&rows.map(|r| (t, r)).collect::<Vec<_>>())
}

impl<'s, 'b> Batched<'s, 'b> {
    /// An engine over `session`, its cache allocated now.
    pub fn new(session: &'s mut Session<'b>, opts: BatchOptions) -> Result<Self> {
        if opts.max_seqs == 0 || opts.token_budget == 0 || opts.block_size == 0 {
            return Err(Error::Input("max sequences, token budget and block size must be at least 1".into()));
        }
        let kv_blocks =
            if opts.kv_blocks == 0 { opts.max_seqs * 1024usize.div_ceil(opts.block_size) } else { opts.kv_blocks };
        let t = &session.model.config.text;
        let slots = kv_blocks * opts.block_size;
        let pools = KvPools::new(session.backend(), t.num_layers, slots, t.num_kv_heads, t.head_dim)?;
        Ok(Batched {
            session,
            opts: BatchOptions { kv_blocks, ..opts },
            blocks: BlockPool::new(kv_blocks, opts.block_size),
            pools,
            waiting: VecDeque::new(),
            queued: VecDeque::new(),
            running: Vec::new(),
            stats: BatchStats::default(),
            compiled: crate::compile::StepCache::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> BatchStats {
        self.stats
    }

    /// Cache blocks (free, total): every block is free again once all requests are done.
    pub fn blocks(&self) -> (usize, usize) {
        (self.blocks.free(), self.blocks.total())
    }

    /// Checks a request and prepares its sequence (positions; features come at admission).
    fn prepare(&self, req: Request) -> std::result::Result<Seq, (u64, String)> {
        let cfg = &self.session.model.config;
        let id = req.id;
        let fail = |m: String| Err((id, m));
        let ids = &req.prompt.ids;
        if ids.is_empty() {
            return fail("the prompt has no tokens".into());
        }
        if let Err(e) = super::fits_context(&self.session.model, ids.len(), req.max_new_tokens) {
            return fail(e.to_string());
        }
        let needed = self.blocks.blocks_for(ids.len() + req.max_new_tokens);
        if needed > self.blocks.total() {
            return fail(format!(
                "prompt ({} tokens) + max new tokens ({}) need {needed} KV cache blocks; the cache has {}",
                ids.len(),
                req.max_new_tokens,
                self.blocks.total()
            ));
        }
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= cfg.text.vocab_size) {
            return fail(format!("token id {bad} is outside the vocabulary ({})", cfg.text.vocab_size));
        }
        let grids: Vec<[usize; 3]> = req.prompt.images.iter().map(|p| p.grid_thw).collect();
        let (positions, rope_delta) = rope_index(ids, cfg.image_token_id, &grids, cfg.vision.spatial_merge_size)
            .map_err(|e| (id, e.to_string()))?;
        let mut next = 0;
        let image_row = ids
            .iter()
            .map(|&t| {
                (t == cfg.image_token_id).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let sampler = Sampler::new(req.sampling.clone()).map_err(|e| (id, e.to_string()))?;
        Ok(Seq {
            tokens: ids.clone(),
            positions,
            rope_delta,
            image_row,
            features: None,
            blocks: Vec::new(),
            cached: 0,
            sampler,
            produced: 0,
            req,
        })
    }

    /// Image features of `seqs` (those that have images and none yet): their images go
    /// through the vision tower together, in passes of at most `VISION_PATCHES` patches (the
    /// packed images attend block-diagonally, so one pass over very many patches costs more
    /// than it saves).
    fn encode_images(&mut self, seqs: &mut [Seq]) -> Result<()> {
        let todo: Vec<usize> =
            (0..seqs.len()).filter(|&i| seqs[i].features.is_none() && !seqs[i].req.prompt.images.is_empty()).collect();
        let patches = |s: &Seq| s.req.prompt.images.iter().map(|p| p.grid_thw.iter().product::<usize>()).sum::<usize>();
        let mut group: Vec<usize> = Vec::new();
        let mut size = 0;
        for i in todo {
            let n = patches(&seqs[i]);
            if !group.is_empty() && size + n > VISION_PATCHES {
                self.encode_group(seqs, &std::mem::take(&mut group))?;
                size = 0;
            }
            group.push(i);
            size += n;
        }
        if !group.is_empty() {
            self.encode_group(seqs, &group)?;
        }
        Ok(())
    }

    /// One vision pass over the images of `seqs[todo]`.
    fn encode_group(&mut self, seqs: &mut [Seq], todo: &[usize]) -> Result<()> {
        let images: Vec<_> = todo.iter().flat_map(|&i| seqs[i].req.prompt.images.iter().cloned()).collect();
        let vg = VisionGraph::build(&self.session.model, &images)?;
        let mut outs = vec![vg.embeds];
        outs.extend(&vg.deepstack);
        let mut ex = Executor::with_options(self.session.backend, vg.graph, &[], self.session.compile)?;
        self.session.bind(&mut ex, &vg.weights, &vg.data)?;
        ex.run()?;
        let all: Vec<HostTensor> = outs.iter().map(|o| ex.read(*o)).collect::<Result<_>>()?;
        let merge = self.session.model.config.vision.spatial_merge_size.pow(2);
        let mut at = 0;
        for &i in todo {
            let n: usize = seqs[i].req.prompt.images.iter().map(|p| p.grid_thw.iter().product::<usize>() / merge).sum();
            let rows = at..at + n;
            at += n;
            let embeds = rows_of(&all[0], rows.clone())?;
            let deepstack = all[1..].iter().map(|d| rows_of(d, rows.clone())).collect::<Result<_>>()?;
            seqs[i].features = Some(Features { embeds, deepstack });
        }
        Ok(())
    }

    /// Moves queued requests and preempted sequences into the running set while there is room
    /// (sequences, and cache blocks for all their tokens).
    fn admit(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let mut admitted = Vec::new();
        loop {
            if self.running.len() + admitted.len() >= self.opts.max_seqs {
                break;
            }
            let seq = match self.waiting.pop_front() {
                Some(s) => s,
                None => match self.queued.pop_front() {
                    Some(req) => match self.prepare(req) {
                        Ok(s) => s,
                        Err((id, error)) => {
                            events.push(Event::Failed { id, error });
                            continue;
                        }
                    },
                    None => break,
                },
            };
            let reserved: usize = admitted.iter().map(|s: &Seq| self.blocks.blocks_for(s.tokens.len())).sum();
            if self.blocks.blocks_for(seq.tokens.len()) + reserved > self.blocks.free() {
                self.waiting.push_front(seq);
                break;
            }
            admitted.push(seq);
        }
        match self.encode_images(&mut admitted) {
            Ok(()) => {}
            // A device error stops the engine.
            Err(e @ (Error::Backend(_) | Error::Io(_))) => return Err(e),
            // A request's own fault: encode each alone to fail only the bad ones.
            Err(_) => {
                let mut ok = Vec::new();
                for s in admitted.drain(..) {
                    let mut one = [s];
                    match self.encode_images(&mut one) {
                        Ok(()) => ok.extend(one),
                        Err(e @ (Error::Backend(_) | Error::Io(_))) => return Err(e),
                        Err(e) => events.push(Event::Failed { id: one[0].req.id, error: e.to_string() }),
                    }
                }
                admitted = ok;
            }
        }
        self.running.extend(admitted);
        Ok(())
    }

    /// Frees a sequence's blocks and queues it for recomputation (first in line).
    fn preempt(&mut self, mut s: Seq) {
        self.blocks.give_back(&mut s.blocks);
        s.cached = 0;
        self.stats.preemptions += 1;
        self.waiting.push_front(s);
    }

    /// Picks each running sequence's new tokens for this step (oldest first), growing block
    /// tables and preempting the youngest sequences when blocks run out.
    fn schedule(&mut self, events: &mut Vec<Event>) -> Vec<usize> {
        let mut budget = self.opts.token_budget;
        let mut plan = Vec::new();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let s = &self.running[i];
            let mut n = (s.tokens.len() - s.cached).min(budget);
            let mut need = self.blocks.blocks_for(s.cached + n).saturating_sub(s.blocks.len());
            while need > self.blocks.free() && i + 1 < self.running.len() {
                let victim = self.running.pop().expect("a younger sequence");
                self.preempt(victim);
            }
            if need > self.blocks.free() {
                let s = &self.running[i];
                n = ((s.blocks.len() + self.blocks.free()) * self.blocks.block_size()).saturating_sub(s.cached).min(n);
                need = self.blocks.free();
            }
            if n == 0 {
                let s = self.running.remove(i);
                if plan.is_empty() && self.running.is_empty() {
                    // Alone and still no room: more than the whole cache (prepare() refuses those).
                    events.push(Event::Failed { id: s.req.id, error: "the KV cache cannot hold this request".into() });
                    let mut s = s;
                    self.blocks.give_back(&mut s.blocks);
                } else {
                    self.preempt(s);
                }
                continue;
            }
            let got = self.blocks.take(need).expect("blocks checked free");
            self.running[i].blocks.extend(got);
            plan.push(n);
            budget -= n;
            i += 1;
        }
        plan
    }
}

impl Serve for Batched<'_, '_> {
    fn submit(&mut self, req: Request) -> Result<()> {
        self.queued.push_back(req);
        Ok(())
    }

    fn step(&mut self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let t0 = std::time::Instant::now();
        self.admit(&mut events)?;
        let t_admit = t0.elapsed();
        // Requests asking for no tokens end at once.
        let (done, keep): (Vec<Seq>, Vec<Seq>) = self.running.drain(..).partition(|s| s.req.max_new_tokens == 0);
        self.running = keep;
        for mut s in done {
            self.blocks.give_back(&mut s.blocks);
            events.push(Event::Done { id: s.req.id, finish: Finish::Length });
        }
        let plan = self.schedule(&mut events);
        if plan.is_empty() {
            return Ok(events);
        }
        self.stats.steps += 1;
        self.stats.peak_batch = self.stats.peak_batch.max(plan.len());
        let live = &self.running[..plan.len()];
        let mut ids: Vec<Vec<u32>> = Vec::with_capacity(plan.len());
        let mut positions: Vec<Vec<[u32; 3]>> = Vec::with_capacity(plan.len());
        let (mut img_rows, mut img_src) = (Vec::new(), Vec::new());
        let mut slots = Vec::new();
        let mut row = 0usize;
        for (s, &n) in live.iter().zip(&plan) {
            let range = s.cached..s.cached + n;
            ids.push(s.tokens[range.clone()].to_vec());
            positions.push(range.clone().map(|k| s.position(k)).collect());
            for k in range {
                if let Some(Some(r)) = s.image_row.get(k) {
                    img_rows.push(row as i32);
                    img_src.push((s, *r));
                }
                let bs = self.blocks.block_size();
                slots.push((s.blocks[k / bs] as usize * bs + k % bs) as i32);
                row += 1;
            }
        }
        let images = if img_rows.is_empty() {
            None
        } else {
            let feats: Vec<(&Features, usize)> = img_src
                .iter()
                .map(|(s, r)| s.features.as_ref().map(|f| (f, *r)))
                .collect::<Option<_>>()
                .ok_or_else(|| Error::Backend("image features missing".into()))?;
            let embeds = gather_rows(&feats.iter().map(|(f, r)| (&f.embeds, *r)).collect::<Vec<_>>())?;
            let deepstack = (0..feats[0].0.deepstack.len())
                .map(|i| gather_rows(&feats.iter().map(|(f, r)| (&f.deepstack[i], *r)).collect::<Vec<_>>()))
                .collect::<Result<_>>()?;
            Some(StepImages { rows: img_rows, embeds, deepstack })
        };
        let items: Vec<BatchItem> = live
            .iter()
            .zip(&plan)
            .enumerate()
            .map(|(i, (s, &n))| BatchItem {
                ids: &ids[i],
                positions: &positions[i],
                past: s.cached,
                blocks: &s.blocks,
                logits: s.cached + n == s.tokens.len(),
            })
            .collect();
        let pool =
            PoolShape { slots: self.blocks.total() * self.blocks.block_size(), block_size: self.blocks.block_size() };
        let t1 = std::time::Instant::now();
        let bg = BatchGraph::build(&self.session.model, &items, images.as_ref(), pool)?;
        let wants: Vec<bool> = items.iter().map(|i| i.logits).collect();
        let keep: Vec<_> = bg.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
        let backend = self.session.backend;
        let compiled = self.compiled.compile(&bg.graph, &keep, backend, self.session.compile)?;
        self.stats.retyped_steps = self.compiled.hits;
        let mut ex = Executor::from_compiled(backend, compiled)?;
        self.session.bind(&mut ex, &bg.weights, &bg.data)?;
        for ((kn, vn), (k, v)) in bg.pool_inputs.iter().zip(&self.pools.layers) {
            ex.bind(kn, *k)?;
            ex.bind(vn, *v)?;
        }
        let t_build = t1.elapsed();
        ex.run()?;
        let logits = bg.logits.map(|l| ex.read(l)).transpose()?;
        log::debug!(
            "step {}: {} sequences, {} tokens; admit {:?}, build+compile {:?}, run {:?}",
            self.stats.steps,
            plan.len(),
            slots.len(),
            t_admit,
            t_build,
            t1.elapsed() - t_build
        );
        // The new keys and values go into the cache at their slots.
        let idx = HostTensor::from_i32([slots.len()], &slots)?;
        let slot_buf = backend.alloc(&idx.desc)?;
        let written = backend.upload(slot_buf, &idx.bytes).and_then(|_| {
            for ((kn, vn), (kp, vp)) in bg.kv.iter().zip(&self.pools.layers) {
                for (node, pool) in [(*kn, *kp), (*vn, *vp)] {
                    let rows = ex.take(node)?;
                    let r = self.pools.write(pool, rows, slots.len(), slot_buf);
                    backend.free(rows);
                    r?;
                }
            }
            Ok(())
        });
        drop(ex);
        backend.free(slot_buf);
        written?;
        // Sample where a sequence reached its end; advance the caches.
        let vocab = self.session.model.config.text.vocab_size;
        let logits = logits.map(|l| l.to_f32()).unwrap_or_default();
        let mut out_row = 0;
        let mut finished = Vec::new();
        for (i, &n) in plan.iter().enumerate() {
            let s = &mut self.running[i];
            s.cached += n;
            if !wants[i] {
                continue;
            }
            let tok = s.sampler.pick(&logits[out_row * vocab..(out_row + 1) * vocab]);
            out_row += 1;
            let id = s.req.id;
            if s.req.stop.contains(&tok) {
                events.push(Event::Done { id, finish: Finish::Stop });
                finished.push(i);
                continue;
            }
            s.tokens.push(tok);
            s.produced += 1;
            events.push(Event::Token { id, token: tok });
            if s.produced >= s.req.max_new_tokens {
                events.push(Event::Done { id, finish: Finish::Length });
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            let mut s = self.running.remove(i);
            self.blocks.give_back(&mut s.blocks);
        }
        Ok(events)
    }

    fn cancel(&mut self, id: u64) -> bool {
        let before = self.pending();
        self.queued.retain(|r| r.id != id);
        for s in self.waiting.iter_mut().chain(self.running.iter_mut()).filter(|s| s.req.id == id) {
            self.blocks.give_back(&mut s.blocks);
        }
        self.waiting.retain(|s| s.req.id != id);
        self.running.retain(|s| s.req.id != id);
        self.pending() != before
    }

    fn pending(&self) -> usize {
        self.queued.len() + self.waiting.len() + self.running.len()
    }

    fn describe(&self) -> String {
        format!(
            "batched (up to {} sequences, {} tokens per step, KV cache {} blocks of {})",
            self.opts.max_seqs,
            self.opts.token_budget,
            self.blocks.total(),
            self.blocks.block_size()
        )
    }
}
