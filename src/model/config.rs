//! `config.json` of a Qwen3-VL checkpoint (dense `qwen3_vl` or MoE `qwen3_vl_moe`), in both
//! dialects that exist: published hub checkpoints (transformers 4.57: `rope_scaling` +
//! `rope_theta`, `num_experts`) and transformers 5.x `save_pretrained` (`rope_parameters`,
//! `num_local_experts`). Unknown fields are ignored; a missing required one is an error.

use super::quant_config::{fp8, modelopt_nvfp4, nvfp4, packed_ints};
pub use super::quant_config::{Fp8Weights, IntLayout, Nvfp4Layout, PackedInts};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// Text decoder settings, normalised across dialects.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Rows of the embedding table and LM head.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// Dense MLP width (dense models).
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Bias on q/k/v/o projections.
    pub attention_bias: bool,
    /// RoPE base.
    pub rope_theta: f32,
    /// MRoPE pairs per axis (t, h, w); sums to head_dim / 2.
    pub mrope_section: [usize; 3],
    /// Longest context the checkpoint was made for.
    pub max_position_embeddings: usize,
    /// Mixture of experts, when the model has it.
    pub moe: Option<MoeConfig>,
}

/// Mixture-of-experts settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Experts per MoE layer.
    pub num_experts: usize,
    /// Experts each token is routed to.
    pub top_k: usize,
    /// Width of one expert's SwiGLU.
    pub intermediate_size: usize,
    /// Every `sparse_step`-th layer is MoE (1: all).
    pub sparse_step: usize,
    /// Layers that keep a dense MLP.
    pub mlp_only_layers: Vec<usize>,
}

impl MoeConfig {
    /// Whether decoder layer `i` is a MoE layer (as transformers decides it).
    pub fn is_moe_layer(&self, i: usize) -> bool {
        !self.mlp_only_layers.contains(&i) && self.num_experts > 0 && (i + 1).is_multiple_of(self.sparse_step.max(1))
    }
}

/// Vision tower settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    /// Transformer blocks.
    pub depth: usize,
    /// Width of the vision transformer.
    pub hidden_size: usize,
    /// MLP activation (`gelu_pytorch_tanh` in Qwen3-VL).
    #[serde(default = "default_vision_act")]
    pub hidden_act: String,
    /// MLP width.
    pub intermediate_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Image channels.
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    /// Spatial patch side in pixels.
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Patches merged per side into one token.
    #[serde(default = "default_merge")]
    pub spatial_merge_size: usize,
    /// Frames per temporal patch.
    #[serde(default = "default_merge")]
    pub temporal_patch_size: usize,
    /// Width of the merged tokens (= text hidden size).
    pub out_hidden_size: usize,
    /// Entries of the learned position table (a square grid).
    #[serde(default = "default_pos")]
    pub num_position_embeddings: usize,
    /// Blocks whose outputs feed the DeepStack mergers.
    #[serde(default)]
    pub deepstack_visual_indexes: Vec<usize>,
}

fn default_vision_act() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_channels() -> usize {
    3
}
fn default_patch() -> usize {
    16
}
fn default_merge() -> usize {
    2
}
fn default_pos() -> usize {
    2304
}

/// A whole Qwen3-VL config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `qwen3_vl` or `qwen3_vl_moe`.
    pub model_type: String,
    /// Text decoder.
    pub text: TextConfig,
    /// Vision tower.
    pub vision: VisionConfig,
    /// `<|image_pad|>` id.
    pub image_token_id: u32,
    /// `<|video_pad|>` id.
    pub video_token_id: u32,
    /// `<|vision_start|>` id.
    pub vision_start_token_id: u32,
    /// `<|vision_end|>` id.
    pub vision_end_token_id: u32,
    /// LM head shares the embedding table (top-level flag; see DESIGN.md on 5.x quirks).
    pub tie_word_embeddings: bool,
    /// End-of-sequence ids from the config (generation_config.json may add more).
    pub eos_token_ids: Vec<u32>,
    /// Vision rotary base.
    pub vision_rope_theta: f32,
    /// A pre-quantized checkpoint's FP8 weights (`quantization_config` with `quant_method: fp8`
    /// and a block size, or compressed-tensors `float-quantized`).
    pub fp8: Option<Fp8Weights>,
    /// A pre-quantized checkpoint's packed integer weights (`quant_method: compressed-tensors`
    /// with `format: pack-quantized`, `gptq` or `awq`).
    pub packed: Option<PackedInts>,
    /// A pre-quantized NVFP4 checkpoint: NVIDIA ModelOpt's (`quant_method: modelopt`,
    /// `quant_algo: NVFP4`, in config.json or hf_quant_config.json) or compressed-tensors'
    /// (`format: nvfp4-pack-quantized`).
    pub nvfp4: Option<Nvfp4Layout>,
}

#[derive(Deserialize)]
struct RawRope {
    #[serde(default)]
    rope_theta: Option<f32>,
    #[serde(default)]
    mrope_section: Option<Vec<usize>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Ids {
    One(u32),
    Many(Vec<u32>),
}

impl Ids {
    fn into_vec(self) -> Vec<u32> {
        match self {
            Ids::One(i) => vec![i],
            Ids::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct RawText {
    vocab_size: usize,
    hidden_size: usize,
    #[serde(default)]
    intermediate_size: Option<usize>,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f32,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    rope_theta: Option<f32>,
    #[serde(default)]
    rope_scaling: Option<RawRope>,
    #[serde(default)]
    rope_parameters: Option<RawRope>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default, alias = "num_local_experts")]
    num_experts: Option<usize>,
    #[serde(default)]
    num_experts_per_tok: Option<usize>,
    #[serde(default)]
    moe_intermediate_size: Option<usize>,
    #[serde(default = "one")]
    decoder_sparse_step: usize,
    #[serde(default)]
    mlp_only_layers: Option<Vec<usize>>,
    #[serde(default)]
    eos_token_id: Option<Ids>,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_max_pos() -> usize {
    128_000
}
fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct RawVisionRope {
    #[serde(default)]
    rope_parameters: Option<RawRope>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    model_type: Option<String>,
    text_config: RawText,
    vision_config: serde_json::Value,
    #[serde(default = "default_image_id")]
    image_token_id: u32,
    #[serde(default = "default_video_id")]
    video_token_id: u32,
    #[serde(default = "default_vs_id")]
    vision_start_token_id: u32,
    #[serde(default = "default_ve_id")]
    vision_end_token_id: u32,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    eos_token_id: Option<Ids>,
    #[serde(default)]
    quantization_config: Option<serde_json::Value>,
}

// transformers' defaults for these ids (the published checkpoints' values).
fn default_image_id() -> u32 {
    151655
}
fn default_video_id() -> u32 {
    151656
}
fn default_vs_id() -> u32 {
    151652
}
fn default_ve_id() -> u32 {
    151653
}

pub(super) fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Model(format!("config.json: {msg}"))
}

impl Config {
    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let mut c = Self::from_json(&text)?;
        // ModelOpt may put its quantization beside config.json instead.
        let hf = dir.join("hf_quant_config.json");
        if c.fp8.is_none() && c.packed.is_none() && c.nvfp4.is_none() && hf.exists() {
            let text = std::fs::read_to_string(&hf).map_err(|e| Error::Io(format!("{}: {e}", hf.display())))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", hf.display())))?;
            c.nvfp4 = modelopt_nvfp4(v.get("quantization").unwrap_or(&v))
                .map(Some)
                .map_err(|e| Error::Model(format!("{}: {e}", hf.display())))?;
        }
        Ok(c)
    }

    /// Parses and checks a config.json text.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: Raw = serde_json::from_str(text).map_err(bad)?;
        let model_type = raw.model_type.unwrap_or_else(|| "qwen3_vl".into());
        if !model_type.starts_with("qwen3_vl") {
            return Err(bad(format!("model_type `{model_type}` is not a Qwen3-VL model (qwen3_vl, qwen3_vl_moe)")));
        }
        let vision: VisionConfig =
            serde_json::from_value(raw.vision_config.clone()).map_err(|e| bad(format!("vision_config: {e}")))?;
        let vision_rope: RawVisionRope =
            serde_json::from_value(raw.vision_config).map_err(|e| bad(format!("vision_config: {e}")))?;
        let vision_rope_theta = vision_rope.rope_parameters.and_then(|r| r.rope_theta).unwrap_or(10_000.0);
        let t = raw.text_config;
        let rope = t.rope_parameters.as_ref().or(t.rope_scaling.as_ref());
        let rope_theta =
            rope.and_then(|r| r.rope_theta).or(t.rope_theta).ok_or_else(|| bad("text_config: no rope_theta"))?;
        let sec = rope.and_then(|r| r.mrope_section.clone()).unwrap_or_else(|| vec![24, 20, 20]);
        let head_dim = t.head_dim.unwrap_or(t.hidden_size / t.num_attention_heads.max(1));
        if sec.len() != 3 || sec.iter().sum::<usize>() != head_dim / 2 {
            return Err(bad(format!(
                "text_config: mrope_section {sec:?} must have 3 parts summing to head_dim / 2 = {}",
                head_dim / 2
            )));
        }
        let moe = match (model_type.ends_with("moe"), t.num_experts) {
            (true, Some(e)) => Some(MoeConfig {
                num_experts: e,
                top_k: t.num_experts_per_tok.ok_or_else(|| bad("text_config: missing num_experts_per_tok"))?,
                intermediate_size: t
                    .moe_intermediate_size
                    .ok_or_else(|| bad("text_config: missing moe_intermediate_size"))?,
                sparse_step: t.decoder_sparse_step,
                mlp_only_layers: t.mlp_only_layers.unwrap_or_default(),
            }),
            (true, None) => {
                return Err(bad("text_config: a qwen3_vl_moe model needs num_experts (or num_local_experts)"))
            }
            (false, _) => None,
        };
        let text = TextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size.unwrap_or(0),
            num_layers: t.num_hidden_layers,
            num_heads: t.num_attention_heads,
            num_kv_heads: t.num_key_value_heads.unwrap_or(t.num_attention_heads),
            head_dim,
            rms_norm_eps: t.rms_norm_eps,
            attention_bias: t.attention_bias,
            rope_theta,
            mrope_section: [sec[0], sec[1], sec[2]],
            max_position_embeddings: t.max_position_embeddings,
            moe,
        };
        let eos_token_ids = raw.eos_token_id.or(t.eos_token_id).map(Ids::into_vec).unwrap_or_default();
        let mut c = Config {
            model_type,
            text,
            vision,
            image_token_id: raw.image_token_id,
            video_token_id: raw.video_token_id,
            vision_start_token_id: raw.vision_start_token_id,
            vision_end_token_id: raw.vision_end_token_id,
            tie_word_embeddings: raw.tie_word_embeddings,
            eos_token_ids,
            vision_rope_theta,
            fp8: None,
            packed: None,
            nvfp4: None,
        };
        if let Some(q) = raw.quantization_config.as_ref() {
            c.fp8 = fp8(q)?;
            c.nvfp4 = if c.fp8.is_none() { nvfp4(q)? } else { None };
            if c.fp8.is_none() && c.nvfp4.is_none() {
                c.packed = Some(packed_ints(q)?);
            }
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<()> {
        let (t, v) = (&self.text, &self.vision);
        let nonzero = [
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_hidden_layers", t.num_layers),
            ("text_config.num_attention_heads", t.num_heads),
            ("text_config.num_key_value_heads", t.num_kv_heads),
            ("text_config.head_dim", t.head_dim),
            ("vision_config.depth", v.depth),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, x)| *x == 0) {
            return Err(bad(format!("{name} must be positive")));
        }
        if t.num_heads % t.num_kv_heads != 0 {
            return Err(bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_heads, t.num_kv_heads
            )));
        }
        if t.head_dim % 2 != 0 {
            return Err(bad(format!("head_dim {} must be even", t.head_dim)));
        }
        if t.moe.is_none() && t.intermediate_size == 0 {
            return Err(bad("text_config: missing intermediate_size"));
        }
        if v.hidden_size % v.num_heads != 0 || (v.hidden_size / v.num_heads) % 4 != 0 {
            return Err(bad(format!(
                "vision hidden_size {} over {} heads must give a head width divisible by 4",
                v.hidden_size, v.num_heads
            )));
        }
        if v.out_hidden_size != t.hidden_size {
            return Err(bad(format!(
                "vision out_hidden_size {} differs from text hidden_size {}",
                v.out_hidden_size, t.hidden_size
            )));
        }
        let side = (v.num_position_embeddings as f64).sqrt() as usize;
        if side * side != v.num_position_embeddings {
            return Err(bad(format!("vision num_position_embeddings {} is not a square", v.num_position_embeddings)));
        }
        if let Some(&bad_ix) = v.deepstack_visual_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(bad(format!("deepstack_visual_indexes has {bad_ix}, the tower has {} blocks", v.depth)));
        }
        if let Some(m) = &self.text.moe {
            if m.top_k == 0 || m.top_k > m.num_experts || m.intermediate_size == 0 {
                return Err(bad(format!(
                    "moe: top_k {} of {} experts, width {}",
                    m.top_k, m.num_experts, m.intermediate_size
                )));
            }
        }
        Ok(())
    }

    /// Whether this is the mixture-of-experts architecture.
    pub fn is_moe(&self) -> bool {
        self.text.moe.is_some()
    }

    /// Shorthand for the MoE settings.
    pub fn moe(&self) -> Option<&MoeConfig> {
        self.text.moe.as_ref()
    }
}
