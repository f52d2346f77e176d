//! Qwen3-VL (dense and MoE) as graphs: a loaded checkpoint (config + validated weights) and the
//! builders of its prefill and decode graphs. No backend code here: model code only builds
//! graphs.

mod batch;
mod experts;
mod fp8;
mod graph;
mod moe;
mod nvfp4;
mod packed;
pub mod positions;
mod quantize;
mod text;
mod vision;

pub use batch::{BatchGraph, BatchItem, PoolShape, StepImages};
pub use graph::{DecodeGraph, Pixels, PrefillGraph, PrefillInputs, VisionGraph};
pub use quantize::{global_name, quantized_names, Quantization};

use super::weights::Weights;
use super::Config;
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// Where the expert tensors keep their input dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertLayout {
    /// Published hub checkpoints: gate_up_proj `[E, hidden, 2I]`, down_proj `[E, I, hidden]`.
    Hub,
    /// transformers 5.x `save_pretrained`: gate_up_proj `[E, 2I, hidden]`, down_proj `[E, hidden, I]`.
    OutIn,
}

/// A Qwen3-VL checkpoint, checked against its config.
pub struct Qwen3VL {
    /// The model's config.
    pub config: Config,
    /// The mapped weights.
    pub weights: Weights,
    text: String,
    visual: String,
    lm_head: String,
    /// Layout of the fused expert tensors (MoE only).
    pub expert_layout: ExpertLayout,
    quant: Option<Quantization>,
}

impl Qwen3VL {
    /// Loads `dir/config.json` and the safetensors, checking every tensor's presence and shape.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = Config::from_dir(dir)?;
        let weights = Weights::open(dir)?;
        Self::new(config, weights)
    }

    /// Checks `weights` against `config`.
    pub fn new(config: Config, weights: Weights) -> Result<Self> {
        let pick = |cands: &[&str], probe: &str| {
            cands.iter().find(|p| weights.contains(&format!("{p}{probe}"))).map(|p| p.to_string())
        };
        let text = pick(&["model.language_model.", "model.", "language_model.model."], "embed_tokens.weight")
            .ok_or_else(|| Error::Model("missing tensor `model.language_model.embed_tokens.weight`".into()))?;
        let visual = pick(&["model.visual.", "visual."], "patch_embed.proj.weight")
            .ok_or_else(|| Error::Model("missing tensor `model.visual.patch_embed.proj.weight`".into()))?;
        let lm_head = if config.tie_word_embeddings {
            format!("{text}embed_tokens.weight")
        } else {
            ["lm_head.weight", "language_model.lm_head.weight"]
                .iter()
                .find(|n| weights.contains(n))
                .map(|n| n.to_string())
                .ok_or_else(|| Error::Model("missing tensor `lm_head.weight` (tie_word_embeddings is false)".into()))?
        };
        let expert_layout = match config.moe() {
            Some(m) => {
                let name = format!("{text}layers.0.mlp.experts.gate_up_proj");
                // Experts stored one matrix per expert (FP8 checkpoints) have no stack layout.
                let shape = weights.get(&name).map(|w| w.shape.to_vec()).unwrap_or_default();
                let (h, i2) = (config.text.hidden_size, 2 * m.intermediate_size);
                if h == i2 {
                    log::warn!("hidden size equals 2 x moe_intermediate_size: assuming the hub expert layout");
                }
                if shape == [m.num_experts, h, i2] {
                    ExpertLayout::Hub
                } else {
                    ExpertLayout::OutIn
                }
            }
            None => ExpertLayout::Hub,
        };
        let m = Qwen3VL { config, weights, text, visual, lm_head, expert_layout, quant: None };
        m.validate()?;
        Ok(m)
    }

    pub(crate) fn tname(&self, s: &str) -> String {
        format!("{}{s}", self.text)
    }
    pub(crate) fn vname(&self, s: &str) -> String {
        format!("{}{s}", self.visual)
    }
    /// Name of the LM head weight (the embedding table when tied).
    pub fn lm_head_name(&self) -> &str {
        &self.lm_head
    }

    /// Every tensor the graphs read, with the shape the config implies.
    pub fn weight_specs(&self) -> Vec<(String, Vec<usize>)> {
        specs(&self.config, &self.text, &self.visual, &self.lm_head, self.expert_layout)
    }

    fn validate(&self) -> Result<()> {
        let specs = self.weight_specs();
        // Pre-quantized tensors first: their errors say more than a shape mismatch would.
        let nvfp4 = self.check_nvfp4(&specs)?;
        let fp8_scales = self.check_fp8(&specs)?;
        let packed = self.check_packed(&specs)?;
        for (name, shape) in &specs {
            if self.stored_fp8(name).is_none()
                && self.stored_packed(name).is_none()
                && self.stored_nvfp4(name).is_none()
            {
                self.weights.expect(name, shape)?;
            }
        }
        let mut known: HashSet<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
        known.extend(fp8_scales.iter().chain(&packed).chain(&nvfp4).map(|s| s.as_str()));
        let mut extra: Vec<&str> = self
            .weights
            .names()
            .filter(|n| !known.contains(n))
            // A tied checkpoint may still carry its (ignored) LM head.
            .filter(|n| !(self.config.tie_word_embeddings && n.ends_with("lm_head.weight")))
            .collect();
        extra.sort();
        if let Some(first) = extra.first() {
            return Err(Error::Model(format!(
                "unexpected tensor `{first}` ({} unexpected in all): the checkpoint does not match its config.json",
                extra.len()
            )));
        }
        Ok(())
    }
}

/// Every tensor a Qwen3-VL graph reads, with the shape `config` implies, for the given name
/// prefixes (`model.language_model.`, `model.visual.`), LM head name and expert layout.
pub fn specs(
    config: &Config,
    text: &str,
    visual: &str,
    lm_head: &str,
    layout: ExpertLayout,
) -> Vec<(String, Vec<usize>)> {
    let (t, v) = (&config.text, &config.vision);
    let (h, d) = (t.hidden_size, t.head_dim);
    let mut s: Vec<(String, Vec<usize>)> = Vec::new();
    let mut tw = |n: &str, shape: Vec<usize>| s.push((format!("{text}{n}"), shape));
    tw("embed_tokens.weight", vec![t.vocab_size, h]);
    tw("norm.weight", vec![h]);
    for l in 0..t.num_layers {
        let p = format!("layers.{l}.");
        tw(&format!("{p}input_layernorm.weight"), vec![h]);
        tw(&format!("{p}post_attention_layernorm.weight"), vec![h]);
        for (n, rows) in [("q", t.num_heads * d), ("k", t.num_kv_heads * d), ("v", t.num_kv_heads * d)] {
            tw(&format!("{p}self_attn.{n}_proj.weight"), vec![rows, h]);
            if t.attention_bias {
                tw(&format!("{p}self_attn.{n}_proj.bias"), vec![rows]);
            }
        }
        tw(&format!("{p}self_attn.o_proj.weight"), vec![h, t.num_heads * d]);
        if t.attention_bias {
            tw(&format!("{p}self_attn.o_proj.bias"), vec![h]);
        }
        tw(&format!("{p}self_attn.q_norm.weight"), vec![d]);
        tw(&format!("{p}self_attn.k_norm.weight"), vec![d]);
        match config.moe().filter(|m| m.is_moe_layer(l)) {
            Some(m) => {
                let (e, i) = (m.num_experts, m.intermediate_size);
                tw(&format!("{p}mlp.gate.weight"), vec![e, h]);
                let (gu, dn) = match layout {
                    ExpertLayout::Hub => (vec![e, h, 2 * i], vec![e, i, h]),
                    ExpertLayout::OutIn => (vec![e, 2 * i, h], vec![e, h, i]),
                };
                tw(&format!("{p}mlp.experts.gate_up_proj"), gu);
                tw(&format!("{p}mlp.experts.down_proj"), dn);
            }
            None => {
                let i = t.intermediate_size;
                tw(&format!("{p}mlp.gate_proj.weight"), vec![i, h]);
                tw(&format!("{p}mlp.up_proj.weight"), vec![i, h]);
                tw(&format!("{p}mlp.down_proj.weight"), vec![h, i]);
            }
        }
    }
    if !config.tie_word_embeddings {
        s.push((lm_head.to_string(), vec![t.vocab_size, h]));
    }
    let hv = v.hidden_size;
    let mut vw = |n: &str, shape: Vec<usize>| s.push((format!("{visual}{n}"), shape));
    vw("patch_embed.proj.weight", vec![hv, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size]);
    vw("patch_embed.proj.bias", vec![hv]);
    vw("pos_embed.weight", vec![v.num_position_embeddings, hv]);
    for b in 0..v.depth {
        let p = format!("blocks.{b}.");
        for n in ["norm1", "norm2"] {
            vw(&format!("{p}{n}.weight"), vec![hv]);
            vw(&format!("{p}{n}.bias"), vec![hv]);
        }
        vw(&format!("{p}attn.qkv.weight"), vec![3 * hv, hv]);
        vw(&format!("{p}attn.qkv.bias"), vec![3 * hv]);
        vw(&format!("{p}attn.proj.weight"), vec![hv, hv]);
        vw(&format!("{p}attn.proj.bias"), vec![hv]);
        vw(&format!("{p}mlp.linear_fc1.weight"), vec![v.intermediate_size, hv]);
        vw(&format!("{p}mlp.linear_fc1.bias"), vec![v.intermediate_size]);
        vw(&format!("{p}mlp.linear_fc2.weight"), vec![hv, v.intermediate_size]);
        vw(&format!("{p}mlp.linear_fc2.bias"), vec![hv]);
    }
    let merged = hv * v.spatial_merge_size * v.spatial_merge_size;
    let mut merger = |p: String, norm: usize| {
        vw(&format!("{p}norm.weight"), vec![norm]);
        vw(&format!("{p}norm.bias"), vec![norm]);
        vw(&format!("{p}linear_fc1.weight"), vec![merged, merged]);
        vw(&format!("{p}linear_fc1.bias"), vec![merged]);
        vw(&format!("{p}linear_fc2.weight"), vec![v.out_hidden_size, merged]);
        vw(&format!("{p}linear_fc2.bias"), vec![v.out_hidden_size]);
    };
    merger("merger.".into(), hv);
    for j in 0..v.deepstack_visual_indexes.len() {
        merger(format!("deepstack_merger_list.{j}."), merged);
    }
    s
}
