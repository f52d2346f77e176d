//! The Qwen3 text decoder: pre-norm layers with q/k RMSNorm, interleaved MRoPE, grouped-query
//! attention over the KV cache, DeepStack additions after the first layers, dense SwiGLU or
//! MoE MLPs, final norm and LM head.

use super::graph::Ctx;
use super::moe;
use crate::graph::{NodeId, Op, RopeStyle};
use crate::Result;

/// Shapes and per-step inputs of one decoder pass.
pub(crate) struct Step<'a> {
    /// New tokens.
    pub t: usize,
    /// Cached positions before them.
    pub past: usize,
    /// Rotary tables `[t, head_dim / 2]`.
    pub cos: NodeId,
    pub sin: NodeId,
    /// Additive causal mask `[t, past + t]` (None for a single query).
    pub mask: Option<NodeId>,
    /// Rows of the image tokens, for the DeepStack additions.
    pub visual_rows: Option<NodeId>,
    /// DeepStack features added after layers 0, 1, ...
    pub deepstack: &'a [NodeId],
    /// Attention through a paged KV cache (a batch of many sequences) instead of the dense
    /// cache inputs and mask.
    pub paged: Option<Paged>,
}

/// The paged KV cache of a batched step: per layer pools `kv.{l}.k_pool` / `kv.{l}.v_pool`
/// (`[slots, kv_heads, head_dim]`) and the batch's index (see `Op::PagedAttention`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paged {
    /// The index tensor `[t, PAGED_META + blocks]`.
    pub index: NodeId,
    /// Slots per pool.
    pub slots: usize,
    /// Slots per block.
    pub block_size: usize,
}

/// Graph input name of a layer's cached keys or values.
pub(crate) fn kv_name(layer: usize, which: &str) -> String {
    format!("kv.{layer}.{which}")
}

/// `x @ w^T (+ b)` for the weight `name` (`.weight` / `.bias` appended).
pub(crate) fn linear(c: &mut Ctx, x: NodeId, name: &str, bias: bool) -> Result<NodeId> {
    let wname = format!("{name}.weight");
    let y = match c.m.quant_of(&wname) {
        Some(q) => {
            let w = c.wq(&wname, q)?;
            c.g.qmatmul(x, &w)?
        }
        None => {
            let w = c.w(&wname)?;
            c.g.linear(x, w)?
        }
    };
    if !bias {
        return Ok(y);
    }
    let b = c.w(&format!("{name}.bias"))?;
    c.g.add(y, b)
}

/// Runs every decoder layer and the final norm; returns the hidden states and each layer's
/// full keys and values (cache + new) for the next step.
pub(crate) fn decoder(c: &mut Ctx, mut h: NodeId, s: &Step) -> Result<(NodeId, Vec<(NodeId, NodeId)>)> {
    let cfg = c.m.config.text.clone();
    let mut kv = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        c.g.set_scope(&format!("text.layer.{l}"));
        let p = c.m.tname(&format!("layers.{l}."));
        let norm = c.w(&format!("{p}input_layernorm.weight"))?;
        let x = c.g.rms_norm(h, norm, cfg.rms_norm_eps)?;
        let (attn, k, v) = attention(c, x, &p, l, s)?;
        kv.push((k, v));
        h = c.g.add(h, attn)?;
        let norm = c.w(&format!("{p}post_attention_layernorm.weight"))?;
        let x = c.g.rms_norm(h, norm, cfg.rms_norm_eps)?;
        let mlp = match c.m.config.moe().filter(|m| m.is_moe_layer(l)) {
            Some(_) => moe::block(c, x, &p, s.t)?,
            None => {
                let g = linear(c, x, &format!("{p}mlp.gate_proj"), false)?;
                let u = linear(c, x, &format!("{p}mlp.up_proj"), false)?;
                let a = c.g.swiglu(g, u)?;
                linear(c, a, &format!("{p}mlp.down_proj"), false)?
            }
        };
        h = c.g.add(h, mlp)?;
        if let (Some(rows), Some(&ds)) = (s.visual_rows, s.deepstack.get(l)) {
            h = c.g.push(Op::ScatterRows { accumulate: true }, &[h, rows, ds])?;
        }
    }
    c.g.set_scope("text");
    let norm = c.w(&c.m.tname("norm.weight"))?;
    Ok((c.g.rms_norm(h, norm, cfg.rms_norm_eps)?, kv))
}

/// Self-attention of one layer: returns its output and the layer's keys and values
/// `[kv_heads, past + t, head_dim]` (paged: the new keys and values `[t, kv_heads, head_dim]`).
fn attention(c: &mut Ctx, x: NodeId, p: &str, layer: usize, s: &Step) -> Result<(NodeId, NodeId, NodeId)> {
    let cfg = c.m.config.text.clone();
    let (t, d, bias) = (s.t, cfg.head_dim, cfg.attention_bias);
    let tokens_first = s.paged.is_some();
    let heads = |c: &mut Ctx, which: &str, n: usize, normed: bool| -> Result<NodeId> {
        let y = linear(c, x, &format!("{p}self_attn.{which}_proj"), bias)?;
        let mut y = c.g.reshape(y, [t, n, d])?;
        if normed {
            let w = c.w(&format!("{p}self_attn.{which}_norm.weight"))?;
            y = c.g.rms_norm(y, w, cfg.rms_norm_eps)?;
            y = c.g.rope(y, s.cos, s.sin, RopeStyle::Half)?;
        }
        if tokens_first {
            return Ok(y);
        }
        c.g.permute(y, &[1, 0, 2])
    };
    let q = heads(c, "q", cfg.num_heads, true)?;
    if let Some(pg) = s.paged {
        let (k, v) = (heads(c, "k", cfg.num_kv_heads, true)?, heads(c, "v", cfg.num_kv_heads, false)?);
        let desc = crate::graph::TensorDesc::new(crate::graph::DType::F32, [pg.slots, cfg.num_kv_heads, d]);
        let kp = c.g.input(&kv_name(layer, "k_pool"), desc.clone())?;
        let vp = c.g.input(&kv_name(layer, "v_pool"), desc)?;
        let op = Op::PagedAttention { scale: (d as f32).powf(-0.5), block_size: pg.block_size };
        let o = c.g.push(op, &[q, k, v, kp, vp, pg.index])?;
        let o = c.g.reshape(o, [t, cfg.num_heads * d])?;
        return Ok((linear(c, o, &format!("{p}self_attn.o_proj"), bias)?, k, v));
    }
    let mut k = heads(c, "k", cfg.num_kv_heads, true)?;
    let mut v = heads(c, "v", cfg.num_kv_heads, false)?;
    if s.past > 0 {
        let desc = crate::graph::TensorDesc::new(crate::graph::DType::F32, [cfg.num_kv_heads, s.past, d]);
        let kc = c.g.input(&kv_name(layer, "k"), desc.clone())?;
        let vc = c.g.input(&kv_name(layer, "v"), desc)?;
        k = c.g.concat(&[kc, k], 1)?;
        v = c.g.concat(&[vc, v], 1)?;
    }
    let o = c.g.attention(q, k, v, s.mask, (d as f32).powf(-0.5))?;
    let o = c.g.permute(o, &[1, 0, 2])?;
    let o = c.g.reshape(o, [t, cfg.num_heads * d])?;
    Ok((linear(c, o, &format!("{p}self_attn.o_proj"), bias)?, k, v))
}

/// Logits of the given hidden states.
pub(crate) fn lm_head(c: &mut Ctx, h: NodeId) -> Result<NodeId> {
    let m = c.m;
    let w = c.w(m.lm_head_name())?;
    c.g.linear(h, w)
}
