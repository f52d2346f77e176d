//! Synthetic Qwen3-VL checkpoints: a config of any size (dense or MoE) and seeded random
//! weights written as safetensors, for benchmarks and tests that need a model of a given shape
//! but no trained weights (nothing is downloaded).

use super::qwen3_vl::{specs, ExpertLayout};
use super::Config;
use crate::graph::DType;
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

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
            dtype: DType::F32,
        }
    }

    /// A small MoE model (hidden 256, 16 experts, top-4).
    pub fn small_moe() -> Self {
        SyntheticSpec { moe: true, experts: 16, top_k: 4, moe_intermediate: 128, ..Self::small_dense() }
    }

    /// `config.json` of this spec.
    pub fn config_json(&self) -> String {
        let deepstack: Vec<usize> = (0..self.vision_depth.min(3)).collect();
        let experts = if self.moe {
            format!(
                r#""num_experts": {}, "num_experts_per_tok": {}, "moe_intermediate_size": {},"#,
                self.experts, self.top_k, self.moe_intermediate
            )
        } else {
            String::new()
        };
        let sections = {
            let half = self.head_dim / 2;
            let (a, b) = (half * 3 / 8, half * 3 / 8);
            format!("[{}, {}, {}]", a, b, half - a - b)
        };
        format!(
            r#"{{
  "model_type": "{mt}", "tie_word_embeddings": false, "torch_dtype": "{dt}",
  "image_token_id": {img}, "video_token_id": {vid}, "vision_start_token_id": {vs}, "vision_end_token_id": {ve},
  "text_config": {{
    "vocab_size": {vocab}, "hidden_size": {h}, "intermediate_size": {i}, "num_hidden_layers": {l},
    "num_attention_heads": {nh}, "num_key_value_heads": {kv}, "head_dim": {hd}, "rms_norm_eps": 1e-6,
    "rope_scaling": {{"rope_type": "default", "mrope_section": {sections}, "mrope_interleaved": true}},
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
            img = self.vocab - 4,
            vid = self.vocab - 3,
            vs = self.vocab - 2,
            ve = self.vocab - 1,
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
            ds = deepstack,
        )
    }
}

/// Writes `config.json` and `model.safetensors` of `spec` into `dir` (created if needed);
/// weights are uniform with a scale keeping activations in range, norms near 1.
pub fn write(dir: &Path, spec: &SyntheticSpec, seed: u64) -> Result<()> {
    use safetensors::tensor::TensorView;
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = spec.config_json();
    std::fs::write(dir.join("config.json"), &json).map_err(io)?;
    let config = Config::from_json(&json)?;
    let mut tensors = specs(&config, "model.language_model.", "model.visual.", "lm_head.weight", ExpertLayout::Hub);
    tensors.sort();
    let st_dtype = match spec.dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::F16 => safetensors::Dtype::F16,
        d => return Err(Error::Input(format!("synthetic weights cannot be {d:?}"))),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            let fan_in = *s.last().unwrap_or(&1) as f32;
            let v: Vec<f32> = if n.contains("norm") && n.ends_with("weight") {
                (0..count).map(|_| 1.0 + rng.random_range(-0.1..0.1)).collect()
            } else {
                let a = (3.0 / fan_in.max(1.0)).sqrt();
                (0..count).map(|_| rng.random_range(-a..a)).collect()
            };
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
