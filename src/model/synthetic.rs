//! Synthetic Qwen3-VL models: a config of any size (dense or MoE), the real models' shapes as
//! presets, and seeded random weights, either generated on the device (`Qwen3VL::synthetic`:
//! speed at real shapes without a checkpoint) or written as safetensors (`write`) for tests
//! that need files. Both give the same values (`graph::random`, `weights::synthetic_range`).

use super::qwen3_vl::{specs, ExpertLayout, Qwen3VL};
use super::weights::{synthetic_range, Weights};
use super::Config;
use crate::graph::{random, DType};
use crate::{Error, Result};
use std::path::Path;

/// Names of the presets `SyntheticSpec::preset` knows.
pub const PRESETS: &[&str] =
    &["tiny", "qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-8b", "qwen3-vl-30b-a3b", "qwen3-vl-235b-a22b"];

/// The vocabulary of every Qwen3-VL checkpoint (the Qwen3 tokenizer padded).
const QWEN3_VOCAB: usize = 151936;

/// The sizes of a synthetic checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// MoE (`qwen3_vl_moe`) rather than dense.
    pub moe: bool,
    /// Text hidden size.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Dense MLP width.
    pub intermediate: usize,
    /// Experts (MoE).
    pub experts: usize,
    /// Experts per token (MoE).
    pub top_k: usize,
    /// Expert MLP width (MoE).
    pub moe_intermediate: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Vision blocks.
    pub vision_depth: usize,
    /// Vision hidden size.
    pub vision_hidden: usize,
    /// Vision heads.
    pub vision_heads: usize,
    /// Vision MLP width.
    pub vision_intermediate: usize,
    /// Vision blocks whose outputs feed the first decoder layers (deepstack).
    pub deepstack: Vec<usize>,
    /// Whether the LM head is the embedding table.
    pub tie: bool,
    /// Weight dtype (F32, BF16 or F16).
    pub dtype: DType,
}

impl SyntheticSpec {
    /// A small dense model (hidden 256).
    pub fn small_dense() -> Self {
        SyntheticSpec {
            moe: false,
            hidden: 256,
            layers: 1,
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            intermediate: 768,
            experts: 0,
            top_k: 0,
            moe_intermediate: 0,
            vocab: 512,
            vision_depth: 1,
            vision_hidden: 128,
            vision_heads: 2,
            vision_intermediate: 512,
            deepstack: vec![0],
            tie: false,
            dtype: DType::F32,
        }
    }

    /// The shapes of a published model (`qwen3-vl-2b`, ..., `qwen3-vl-235b-a22b`, from their
    /// config.json files) or `tiny` (small, but the real vocabulary and special tokens, so the
    /// Qwen3 tokenizer works with it); bf16 weights.
    pub fn preset(name: &str) -> Result<Self> {
        let dense = |hidden, layers, heads, kv_heads, intermediate, big_vision: bool, tie| SyntheticSpec {
            moe: false,
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim: 128,
            intermediate,
            experts: 0,
            top_k: 0,
            moe_intermediate: 0,
            vocab: QWEN3_VOCAB,
            vision_depth: if big_vision { 27 } else { 24 },
            vision_hidden: if big_vision { 1152 } else { 1024 },
            vision_heads: 16,
            vision_intermediate: if big_vision { 4304 } else { 4096 },
            deepstack: if big_vision { vec![8, 16, 24] } else { vec![5, 11, 17] },
            tie,
            dtype: DType::BF16,
        };
        let moe = |hidden, layers, heads, moe_intermediate| SyntheticSpec {
            moe: true,
            experts: 128,
            top_k: 8,
            moe_intermediate,
            ..dense(hidden, layers, heads, 4, 6144, true, false)
        };
        Ok(match name {
            "tiny" => SyntheticSpec {
                hidden: 128,
                layers: 2,
                heads: 4,
                kv_heads: 2,
                head_dim: 32,
                intermediate: 256,
                vision_depth: 2,
                vision_hidden: 64,
                vision_heads: 2,
                vision_intermediate: 128,
                deepstack: vec![0, 1],
                ..dense(0, 0, 0, 0, 0, false, true)
            },
            "qwen3-vl-2b" => dense(2048, 28, 16, 8, 6144, false, true),
            "qwen3-vl-4b" => dense(2560, 36, 32, 8, 9728, false, true),
            "qwen3-vl-8b" => dense(4096, 36, 32, 8, 12288, true, false),
            "qwen3-vl-30b-a3b" => moe(2048, 48, 32, 768),
            "qwen3-vl-235b-a22b" => SyntheticSpec { intermediate: 12288, ..moe(4096, 94, 64, 1536) },
            other => {
                return Err(Error::Input(format!("unknown synthetic preset `{other}` (known: {})", PRESETS.join(", "))))
            }
        })
    }

    /// Keeps the first `n` decoder layers (1 to all of them).
    pub fn with_layers(mut self, n: usize) -> Result<Self> {
        if n == 0 || n > self.layers {
            return Err(Error::Input(format!("--layers {n}: this model has 1 to {} decoder layers", self.layers)));
        }
        self.layers = n;
        Ok(self)
    }

    /// The special token ids (image, video, vision start, vision end): the real ones with the
    /// real vocabulary, else the last four ids.
    fn special_ids(&self) -> [usize; 4] {
        if self.vocab == QWEN3_VOCAB {
            [151655, 151656, 151652, 151653]
        } else {
            let v = self.vocab;
            [v - 4, v - 3, v - 2, v - 1]
        }
    }

    /// The model with seeded random weights, generated on whichever backend the weights are
    /// put on (nothing is written or read from disk).
    pub fn model(&self, seed: u64) -> Result<Qwen3VL> {
        let config = Config::from_json(&self.config_json())?;
        let (text, visual, head) = ("model.language_model.", "model.visual.", "lm_head.weight");
        let head = if self.tie { format!("{text}embed_tokens.weight") } else { head.to_string() };
        let tensors = specs(&config, text, visual, &head, ExpertLayout::Hub);
        Qwen3VL::new(config, Weights::synthetic(&tensors, self.dtype, seed)?)
    }

    /// A small MoE model (hidden 256, 16 experts, top-4).
    pub fn small_moe() -> Self {
        SyntheticSpec { moe: true, experts: 16, top_k: 4, moe_intermediate: 128, ..Self::small_dense() }
    }

    /// `config.json` of this spec.
    pub fn config_json(&self) -> String {
        let [img, vid, vs, ve] = self.special_ids();
        let mrope = if self.head_dim == 128 {
            // The published models' split of the 64 rotary frequencies over (t, h, w).
            "[24, 20, 20]".to_string()
        } else {
            let half = self.head_dim / 2;
            let (a, b) = (half * 3 / 8, half * 3 / 8);
            format!("[{}, {}, {}]", a, b, half - a - b)
        };
        let experts = if self.moe {
            format!(
                r#""num_experts": {}, "num_experts_per_tok": {}, "moe_intermediate_size": {},"#,
                self.experts, self.top_k, self.moe_intermediate
            )
        } else {
            String::new()
        };
        format!(
            r#"{{
  "model_type": "{mt}", "tie_word_embeddings": {tie}, "torch_dtype": "{dt}",
  "image_token_id": {img}, "video_token_id": {vid}, "vision_start_token_id": {vs}, "vision_end_token_id": {ve},
  "text_config": {{
    "vocab_size": {vocab}, "hidden_size": {h}, "intermediate_size": {i}, "num_hidden_layers": {l},
    "num_attention_heads": {nh}, "num_key_value_heads": {kv}, "head_dim": {hd}, "rms_norm_eps": 1e-6,
    "rope_scaling": {{"rope_type": "default", "mrope_section": {mrope}, "mrope_interleaved": true}},
    "rope_theta": 5000000.0, {experts} "max_position_embeddings": 32768
  }},
  "vision_config": {{
    "depth": {vd}, "hidden_size": {vh}, "intermediate_size": {vi}, "num_heads": {vn}, "out_hidden_size": {h},
    "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2, "num_position_embeddings": 2304,
    "deepstack_visual_indexes": {ds:?}, "hidden_act": "gelu_pytorch_tanh"
  }}
}}"#,
            mt = if self.moe { "qwen3_vl_moe" } else { "qwen3_vl" },
            dt = match self.dtype {
                DType::BF16 => "bfloat16",
                DType::F16 => "float16",
                _ => "float32",
            },
            tie = self.tie,
            vocab = self.vocab,
            h = self.hidden,
            i = self.intermediate.max(1),
            l = self.layers,
            nh = self.heads,
            kv = self.kv_heads,
            hd = self.head_dim,
            vd = self.vision_depth,
            vh = self.vision_hidden,
            vi = self.vision_intermediate,
            vn = self.vision_heads,
            ds = self.deepstack,
        )
    }
}

/// Writes `config.json` and `model.safetensors` of `spec` into `dir` (created if needed);
/// the values are those `SyntheticSpec::model` generates on a device.
pub fn write(dir: &Path, spec: &SyntheticSpec, seed: u64) -> Result<()> {
    use safetensors::tensor::TensorView;
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = spec.config_json();
    std::fs::write(dir.join("config.json"), &json).map_err(io)?;
    let config = Config::from_json(&json)?;
    let head = if spec.tie { "model.language_model.embed_tokens.weight" } else { "lm_head.weight" };
    let mut tensors = specs(&config, "model.language_model.", "model.visual.", head, ExpertLayout::Hub);
    tensors.sort();
    let st_dtype = match spec.dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::F16 => safetensors::Dtype::F16,
        d => return Err(Error::Input(format!("synthetic weights cannot be {d:?}"))),
    };
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(n, s)| {
            let count = s.iter().product::<usize>() as u64;
            let (offset, scale) = synthetic_range(n, s);
            let key = random::key(seed, n);
            let v: Vec<f32> = (0..count).map(|i| random::uniform(key, i, offset, scale)).collect();
            crate::tensor::encode(spec.dtype, &v)
        })
        .collect();
    let views = tensors
        .iter()
        .zip(&data)
        .map(|((n, s), b)| {
            TensorView::new(st_dtype, s.clone(), b)
                .map(|v| (n.as_str(), v))
                .map_err(|e| Error::Model(format!("synthetic tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))
        .map_err(|e| Error::Model(format!("writing synthetic weights: {e}")))
}
