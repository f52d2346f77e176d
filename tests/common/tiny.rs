//! Writes a tiny random Qwen3-VL checkpoint (config.json + model.safetensors) for tests that
//! need a model but not a reference: consistency between paths and backends, loader errors.

use lumen::model::qwen3_vl::{specs, ExpertLayout};
use lumen::model::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

pub fn config_json(moe: bool, hub: bool, tie: bool) -> String {
    let (rope, experts) = if hub {
        (
            r#""rope_scaling": {"rope_type": "default", "mrope_section": [3, 3, 2], "mrope_interleaved": true}, "rope_theta": 5000000.0"#,
            r#""num_experts": 6"#,
        )
    } else {
        (
            r#""rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [3, 3, 2], "mrope_interleaved": true}"#,
            r#""num_local_experts": 6"#,
        )
    };
    format!(
        r#"{{
  "model_type": "{mt}", "tie_word_embeddings": {tie},
  "image_token_id": 290, "video_token_id": 291, "vision_start_token_id": 288, "vision_end_token_id": 289,
  "text_config": {{
    "vocab_size": 300, "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
    {rope}, {experts}, "num_experts_per_tok": 2, "moe_intermediate_size": 40, "max_position_embeddings": 512
  }},
  "vision_config": {{
    "depth": 2, "hidden_size": 72, "intermediate_size": 100, "num_heads": 3, "out_hidden_size": 48,
    "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2, "num_position_embeddings": 16,
    "deepstack_visual_indexes": [0, 1], "hidden_act": "gelu_pytorch_tanh"
  }}
}}"#,
        mt = if moe { "qwen3_vl_moe" } else { "qwen3_vl" }
    )
}

/// Writes the model into a fresh scratch directory and returns it (removed when dropped).
pub fn write(name: &str, moe: bool, hub: bool, tie: bool) -> super::scratch::Scratch {
    let dir = super::scratch::Scratch::new(&format!("tiny-{name}"));
    let json = config_json(moe, hub, tie);
    std::fs::write(dir.join("config.json"), &json).unwrap();
    let config = Config::from_json(&json).unwrap();
    let layout = if hub { ExpertLayout::Hub } else { ExpertLayout::OutIn };
    let mut tensors = specs(&config, "model.language_model.", "model.visual.", "lm_head.weight", layout);
    tensors.sort();
    write_tensors(&dir.join("model.safetensors"), &tensors, 0.15);
    dir
}

pub fn write_tensors(path: &Path, tensors: &[(String, Vec<usize>)], std: f32) {
    use safetensors::tensor::TensorView;
    let mut rng = StdRng::seed_from_u64(42);
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            let v: Vec<f32> =
                if n.ends_with("norm.weight") || n.ends_with("norm1.weight") || n.ends_with("norm2.weight") {
                    (0..count).map(|_| 1.0 + rng.random_range(-0.1..0.1)).collect()
                } else {
                    (0..count).map(|_| rng.random_range(-std..std) * 1.7).collect()
                };
            bytemuck::cast_slice(&v).to_vec()
        })
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, s), b)| (n.as_str(), TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}
