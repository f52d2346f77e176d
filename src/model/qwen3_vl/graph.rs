//! Builds one request's graphs: the prefill (vision tower, image features scattered into the
//! token embeddings, decoder over the whole prompt) and the one-token decode step reading the
//! KV cache. Weights are graph inputs named as in the checkpoint, bound once to device buffers.

use super::positions::{causal_mask, rope_index, Grid};
use super::{text, vision, Qwen3VL};
use crate::graph::rope::RopeTable;
use crate::graph::{DType, Graph, GraphBuilder, NodeId};
use crate::{Error, HostTensor, Result};
use std::collections::HashMap;

pub use crate::io::image::Pixels;

/// What a prefill needs: the prompt's token ids (image placeholders expanded) and its images.
#[derive(Debug, Clone, Default)]
pub struct PrefillInputs {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Images, in prompt order.
    pub images: Vec<Pixels>,
}

/// Graph-building state: the builder, weight inputs declared so far, per-request data.
pub(crate) struct Ctx<'m> {
    pub g: GraphBuilder,
    pub m: &'m Qwen3VL,
    weights: HashMap<String, NodeId>,
    data_ids: HashMap<String, NodeId>,
    pub data: Vec<(String, HostTensor)>,
}

impl<'m> Ctx<'m> {
    pub(crate) fn new(m: &'m Qwen3VL) -> Self {
        Ctx { g: GraphBuilder::new(), m, weights: HashMap::new(), data_ids: HashMap::new(), data: Vec::new() }
    }

    /// The weight `name` as a graph input (declared once).
    pub fn w(&mut self, name: &str) -> Result<NodeId> {
        if let Some(id) = self.weights.get(name) {
            return Ok(*id);
        }
        let desc = self.m.weights.get(name)?.desc();
        let id = self.g.input(name, desc)?;
        self.weights.insert(name.to_string(), id);
        Ok(id)
    }

    /// A quantized weight's codes and scales (and NVFP4's global scales) as graph inputs
    /// (declared once).
    pub fn wq(&mut self, name: &str, q: super::Quantization) -> Result<crate::graph::QWeight> {
        let (cn, sn) = super::quantized_names(name);
        let (cd, sd) = self.m.quantized_descs(name)?;
        let mut get = |n: String, d| -> Result<NodeId> {
            if let Some(id) = self.weights.get(&n) {
                return Ok(*id);
            }
            let id = self.g.input(&n, d)?;
            self.weights.insert(n, id);
            Ok(id)
        };
        let (codes, scales) = (get(cn, cd)?, get(sn, sd)?);
        let global = match self.m.global_desc(name)? {
            Some(gd) => Some(get(super::quantize::global_name(name), gd)?),
            None => None,
        };
        Ok(crate::graph::QWeight { codes, scales, global, format: q.format, group: q.group })
    }

    /// A per-request input with its value.
    pub fn data(&mut self, name: &str, t: HostTensor) -> Result<NodeId> {
        let id = self.g.input(name, t.desc.clone())?;
        self.data.push((name.to_string(), t));
        self.data_ids.insert(name.to_string(), id);
        Ok(id)
    }

    /// A per-request input shared by several layers: made on first use.
    pub fn shared(&mut self, name: &str, make: impl FnOnce() -> Result<HostTensor>) -> Result<NodeId> {
        match self.data_ids.get(name) {
            Some(id) => Ok(*id),
            None => {
                let t = make()?;
                self.data(name, t)
            }
        }
    }

    /// Rows of `table` at `idx`, widened to f32 when the table is stored in 16 bits.
    pub fn gather_f32(&mut self, table: NodeId, idx: NodeId) -> Result<NodeId> {
        let rows = self.g.gather(table, idx)?;
        if self.g.desc(rows).dtype == DType::F32 {
            return Ok(rows);
        }
        self.g.push(crate::graph::Op::Cast(DType::F32), &[rows])
    }

    pub fn f32s(&mut self, name: &str, shape: impl Into<crate::graph::Shape>, v: &[f32]) -> Result<NodeId> {
        self.data(name, HostTensor::from_f32(DType::F32, shape, v)?)
    }

    pub fn i32s(&mut self, name: &str, shape: impl Into<crate::graph::Shape>, v: &[i32]) -> Result<NodeId> {
        self.data(name, HostTensor::from_i32(shape, v)?)
    }

    pub(crate) fn finish(self) -> (Graph, Vec<(String, HostTensor)>, Vec<String>) {
        let mut names: Vec<String> = self.weights.into_keys().collect();
        names.sort();
        (self.g.build(), self.data, names)
    }
}

/// The text rotary tables for per-token (t, h, w) positions.
pub(crate) fn text_rope(c: &mut Ctx, positions: &[[u32; 3]]) -> Result<(NodeId, NodeId)> {
    let t = &c.m.config.text;
    let table = RopeTable::mrope_interleaved(t.head_dim, t.rope_theta, t.mrope_section);
    let (cos, sin) = table.cos_sin(positions)?;
    let n = positions.len();
    Ok((c.f32s("text.cos", [n, table.pairs()], &cos)?, c.f32s("text.sin", [n, table.pairs()], &sin)?))
}

/// The prefill graph of one request.
pub struct PrefillGraph {
    /// The graph.
    pub graph: Graph,
    /// Per-request inputs to set before running.
    pub data: Vec<(String, HostTensor)>,
    /// Weight inputs, by checkpoint name.
    pub weights: Vec<String>,
    /// Logits: `[T, vocab]` or `[1, vocab]` (last position only).
    pub logits: NodeId,
    /// Per layer, the keys and values `[kv_heads, T, head_dim]` for the cache.
    pub kv: Vec<(NodeId, NodeId)>,
    /// The merged image features scattered into the embeddings, when there are images.
    pub image_embeds: Option<NodeId>,
    /// DeepStack features, one per DeepStack layer.
    pub deepstack: Vec<NodeId>,
    /// Added to a decode step's cache position to get its rotary position.
    pub rope_delta: i64,
}

impl PrefillGraph {
    /// Builds the prefill of `inp`; `all_logits` keeps the logits of every position.
    pub fn build(m: &Qwen3VL, inp: &PrefillInputs, all_logits: bool) -> Result<Self> {
        let cfg = &m.config;
        let n = inp.ids.len();
        if n == 0 {
            return Err(Error::Input("the prompt has no tokens".into()));
        }
        if n > cfg.text.max_position_embeddings {
            return Err(Error::Input(format!(
                "the prompt has {n} tokens, more than the model's context of {}",
                cfg.text.max_position_embeddings
            )));
        }
        if let Some(bad) = inp.ids.iter().find(|&&i| i as usize >= cfg.text.vocab_size) {
            return Err(Error::Input(format!("token id {bad} is outside the vocabulary ({})", cfg.text.vocab_size)));
        }
        let merge = cfg.vision.spatial_merge_size;
        let grids: Vec<Grid> = inp.images.iter().map(|p| p.grid_thw).collect();
        let (positions, rope_delta) = rope_index(&inp.ids, cfg.image_token_id, &grids, merge)?;
        let mut c = Ctx::new(m);
        let mut h = embed_tokens(&mut c, &inp.ids)?;
        let (mut image_embeds, mut deepstack, mut rows) = (None, Vec::new(), None);
        if !inp.images.is_empty() {
            let (emb, ds) = vision::tower(&mut c, &inp.images)?;
            let at: Vec<i32> =
                inp.ids.iter().enumerate().filter(|(_, &t)| t == cfg.image_token_id).map(|(i, _)| i as i32).collect();
            let r = c.i32s("image.rows", [at.len()], &at)?;
            h = c.g.push(crate::graph::Op::ScatterRows { accumulate: false }, &[h, r, emb])?;
            image_embeds = Some(emb);
            deepstack = ds;
            rows = Some(r);
        }
        let (cos, sin) = text_rope(&mut c, &positions)?;
        let mask = if n > 1 { Some(c.f32s("text.mask", [n, n], &causal_mask(n, 0))?) } else { None };
        let step = text::Step { t: n, past: 0, cos, sin, mask, visual_rows: rows, deepstack: &deepstack, paged: None };
        let (hidden, kv) = text::decoder(&mut c, h, &step)?;
        let last = if all_logits { hidden } else { c.g.slice(hidden, 0, n - 1, 1)? };
        let logits = text::lm_head(&mut c, last)?;
        c.g.output(logits)?;
        let (graph, data, weights) = c.finish();
        Ok(PrefillGraph { graph, data, weights, logits, kv, image_embeds, deepstack, rope_delta })
    }
}

/// The vision tower alone over some images: their features (and DeepStack features) as
/// graph outputs.
pub struct VisionGraph {
    /// The graph.
    pub graph: Graph,
    /// Per-request inputs to set before running.
    pub data: Vec<(String, HostTensor)>,
    /// Weight inputs, by checkpoint name.
    pub weights: Vec<String>,
    /// Image features `[merged tokens, text hidden]`.
    pub embeds: NodeId,
    /// DeepStack features, one per DeepStack layer.
    pub deepstack: Vec<NodeId>,
}

impl VisionGraph {
    /// Builds the tower over `images` (at least one).
    pub fn build(m: &Qwen3VL, images: &[Pixels]) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::Input("the vision tower needs at least one image".into()));
        }
        let mut c = Ctx::new(m);
        let (embeds, deepstack) = vision::tower(&mut c, images)?;
        c.g.output(embeds)?;
        for d in &deepstack {
            c.g.output(*d)?;
        }
        let (graph, data, weights) = c.finish();
        Ok(VisionGraph { graph, data, weights, embeds, deepstack })
    }
}

/// The token embeddings `[ids, hidden]` in f32, whatever dtype the table is stored in.
pub(crate) fn embed_tokens(c: &mut Ctx, ids: &[u32]) -> Result<NodeId> {
    let v: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    let ids = c.i32s("ids", [v.len()], &v)?;
    let table = c.w(&c.m.tname("embed_tokens.weight"))?;
    c.gather_f32(table, ids)
}

/// One decode step: a token at cache position `past` reading `past` cached positions.
pub struct DecodeGraph {
    /// The graph.
    pub graph: Graph,
    /// Per-request inputs to set before running.
    pub data: Vec<(String, HostTensor)>,
    /// Weight inputs, by checkpoint name.
    pub weights: Vec<String>,
    /// Logits `[1, vocab]`.
    pub logits: NodeId,
    /// Per layer, the cache inputs to bind (names) ...
    pub kv_inputs: Vec<(String, String)>,
    /// ... and the grown caches `[kv_heads, past + 1, head_dim]` this step produces.
    pub kv: Vec<(NodeId, NodeId)>,
}

impl DecodeGraph {
    /// Builds the step for `token` with `past` cached positions; `rope_delta` from the prefill.
    pub fn build(m: &Qwen3VL, token: u32, past: usize, rope_delta: i64) -> Result<Self> {
        Self::check(m, token, past)?;
        let mut c = Ctx::new(m);
        let h = embed_tokens(&mut c, &[token])?;
        let pos = (past as i64 + rope_delta).max(0) as u32;
        let (cos, sin) = text_rope(&mut c, &[[pos; 3]])?;
        let step = text::Step { t: 1, past, cos, sin, mask: None, visual_rows: None, deepstack: &[], paged: None };
        let (hidden, kv) = text::decoder(&mut c, h, &step)?;
        let logits = text::lm_head(&mut c, hidden)?;
        c.g.output(logits)?;
        let kv_inputs = (0..m.config.text.num_layers).map(|l| (text::kv_name(l, "k"), text::kv_name(l, "v"))).collect();
        let (graph, data, weights) = c.finish();
        Ok(DecodeGraph { graph, data, weights, logits, kv_inputs, kv })
    }

    fn check(m: &Qwen3VL, token: u32, past: usize) -> Result<()> {
        let cfg = &m.config.text;
        if token as usize >= cfg.vocab_size {
            return Err(Error::Input(format!("token id {token} is outside the vocabulary ({})", cfg.vocab_size)));
        }
        if past + 1 > cfg.max_position_embeddings {
            return Err(Error::Input(format!(
                "the sequence would exceed the model's context of {}",
                cfg.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// The inputs of the step [`Self::build`] makes that change from step to step (the token
    /// id and its rotary tables), without building the graph: a session that keeps the
    /// compiled step sets these (the step's other inputs are the same every step).
    pub fn step_data(m: &Qwen3VL, token: u32, past: usize, rope_delta: i64) -> Result<Vec<(String, HostTensor)>> {
        Self::check(m, token, past)?;
        let t = &m.config.text;
        let pos = (past as i64 + rope_delta).max(0) as u32;
        let table = RopeTable::mrope_interleaved(t.head_dim, t.rope_theta, t.mrope_section);
        let (cos, sin) = table.cos_sin(&[[pos; 3]])?;
        Ok(vec![
            ("ids".to_string(), HostTensor::from_i32([1], &[token as i32])?),
            ("text.cos".to_string(), HostTensor::from_f32(DType::F32, [1, table.pairs()], &cos)?),
            ("text.sin".to_string(), HostTensor::from_f32(DType::F32, [1, table.pairs()], &sin)?),
        ])
    }
}
