//! One batched step over many sequences sharing a paged KV cache: the new tokens of every
//! sequence (a decode token, or a chunk of a prompt) run through the decoder as one `[T, H]`
//! stream, each attending to its own sequence's cached keys (through its block table) and
//! to its own earlier new tokens. Image features come precomputed (the engine encodes the
//! images of newly admitted requests together).

use super::graph::{embed_tokens, text_rope, Ctx};
use super::{text, Qwen3VL};
use crate::graph::{Graph, NodeId, Op, PAGED_META};
use crate::{Error, HostTensor, Result};

/// One sequence's part of a step.
#[derive(Debug, Clone)]
pub struct BatchItem<'a> {
    /// New tokens.
    pub ids: &'a [u32],
    /// Their rotary (t, h, w) positions.
    pub positions: &'a [[u32; 3]],
    /// Tokens of this sequence already in the cache.
    pub past: usize,
    /// The sequence's block table (covering past + new tokens).
    pub blocks: &'a [u32],
    /// Whether the logits of its last new token are wanted.
    pub logits: bool,
}

/// Image features entering this step: rows (indices into the step's tokens) and, for those
/// rows in order, the merged features `[M, hidden]` and the DeepStack features.
#[derive(Debug, Clone)]
pub struct StepImages {
    /// Token rows of the step that are image tokens.
    pub rows: Vec<i32>,
    /// Their features.
    pub embeds: HostTensor,
    /// Their DeepStack features, one per DeepStack layer.
    pub deepstack: Vec<HostTensor>,
}

/// Shape of the paged cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShape {
    /// Slots per layer pool.
    pub slots: usize,
    /// Slots per block.
    pub block_size: usize,
}

/// The graph of one batched step.
pub struct BatchGraph {
    /// The graph.
    pub graph: Graph,
    /// Per-step inputs to set before running.
    pub data: Vec<(String, HostTensor)>,
    /// Weight inputs, by checkpoint name.
    pub weights: Vec<String>,
    /// Logits `[items wanting them, vocab]`, in item order (None when none are wanted).
    pub logits: Option<NodeId>,
    /// Per layer, the pool inputs to bind (names) ...
    pub pool_inputs: Vec<(String, String)>,
    /// ... and the new keys and values `[T, kv_heads, head_dim]` to write into the pools.
    pub kv: Vec<(NodeId, NodeId)>,
}

impl BatchGraph {
    /// Builds the step of `items` over a cache of `pool` shape.
    pub fn build(m: &Qwen3VL, items: &[BatchItem], images: Option<&StepImages>, pool: PoolShape) -> Result<Self> {
        let cfg = &m.config.text;
        let t: usize = items.iter().map(|i| i.ids.len()).sum();
        if t == 0 {
            return Err(Error::Input("a batched step needs at least one token".into()));
        }
        let max_blocks = items.iter().map(|i| i.blocks.len()).max().unwrap_or(0).max(1);
        let (mut ids, mut positions, mut index, mut out_rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for it in items {
            if it.positions.len() != it.ids.len() {
                return Err(Error::Input("a batch item needs one position per token".into()));
            }
            if it.blocks.len() * pool.block_size < it.past + it.ids.len() {
                return Err(Error::Input("a batch item's block table does not cover its tokens".into()));
            }
            if let Some(bad) = it.ids.iter().find(|&&i| i as usize >= cfg.vocab_size) {
                return Err(Error::Input(format!("token id {bad} is outside the vocabulary ({})", cfg.vocab_size)));
            }
            let start = ids.len() as i32;
            for _ in it.ids {
                index.extend([it.past as i32, start]);
                index.extend(it.blocks.iter().map(|&b| b as i32));
                index.extend(std::iter::repeat_n(0, max_blocks - it.blocks.len()));
            }
            ids.extend_from_slice(it.ids);
            positions.extend_from_slice(it.positions);
            if it.logits && !it.ids.is_empty() {
                out_rows.push(ids.len() as i32 - 1);
            }
        }
        let mut c = Ctx::new(m);
        let mut h = embed_tokens(&mut c, &ids)?;
        let (mut rows, mut deepstack) = (None, Vec::new());
        if let Some(img) = images.filter(|i| !i.rows.is_empty()) {
            let r = c.i32s("image.rows", [img.rows.len()], &img.rows)?;
            let e = c.data("image.embeds", img.embeds.clone())?;
            h = c.g.push(Op::ScatterRows { accumulate: false }, &[h, r, e])?;
            for (i, d) in img.deepstack.iter().enumerate() {
                deepstack.push(c.data(&format!("image.deepstack.{i}"), d.clone())?);
            }
            rows = Some(r);
        }
        let (cos, sin) = text_rope(&mut c, &positions)?;
        let index = c.i32s("kv.index", [t, PAGED_META + max_blocks], &index)?;
        let paged = text::Paged { index, slots: pool.slots, block_size: pool.block_size };
        let step = text::Step {
            t,
            past: 0,
            cos,
            sin,
            mask: None,
            visual_rows: rows,
            deepstack: &deepstack,
            paged: Some(paged),
        };
        let (hidden, kv) = text::decoder(&mut c, h, &step)?;
        let logits = if out_rows.is_empty() {
            None
        } else {
            let r = c.i32s("logits.rows", [out_rows.len()], &out_rows)?;
            let last = c.g.gather(hidden, r)?;
            let l = text::lm_head(&mut c, last)?;
            c.g.output(l)?;
            Some(l)
        };
        let pool_inputs =
            (0..cfg.num_layers).map(|l| (text::kv_name(l, "k_pool"), text::kv_name(l, "v_pool"))).collect();
        let (graph, data, weights) = c.finish();
        Ok(BatchGraph { graph, data, weights, logits, pool_inputs, kv })
    }
}
