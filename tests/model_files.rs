//! Model directory loading: config.json in both dialects, safetensors single and sharded, and
//! clear errors for broken files.

use lumen::graph::DType;
use lumen::model::weights::Weights;
use lumen::model::Config;

/// The published Qwen3-VL-30B-A3B-Instruct config (transformers 4.57 dialect), abridged to the
/// fields that matter plus a few it ignores.
const HUB_MOE: &str = r#"{
  "architectures": ["Qwen3VLMoeForConditionalGeneration"],
  "image_token_id": 151655, "model_type": "qwen3_vl_moe",
  "text_config": {
    "attention_bias": false, "bos_token_id": 151643, "decoder_sparse_step": 1, "dtype": "bfloat16",
    "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
    "intermediate_size": 6144, "max_position_embeddings": 262144, "mlp_only_layers": [],
    "model_type": "qwen3_vl_moe_text", "moe_intermediate_size": 768, "norm_topk_prob": true,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_type": "default"},
    "rope_theta": 5000000, "use_cache": true, "vocab_size": 151936
  },
  "tie_word_embeddings": false, "transformers_version": "4.57.0.dev0",
  "video_token_id": 151656,
  "vision_config": {
    "deepstack_visual_indexes": [8, 16, 24], "depth": 27, "hidden_act": "gelu_pytorch_tanh",
    "hidden_size": 1152, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 4304,
    "model_type": "qwen3_vl_moe", "num_heads": 16, "num_position_embeddings": 2304, "out_hidden_size": 2048,
    "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 151653, "vision_start_token_id": 151652
}"#;

/// A transformers 5.x `save_pretrained` dense config (rope_parameters dialect).
const V5_DENSE: &str = r#"{
  "model_type": "qwen3_vl", "tie_word_embeddings": true,
  "text_config": {
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-06,
    "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": true},
    "tie_word_embeddings": true, "some_future_field": {"x": 1}
  },
  "vision_config": {
    "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2048,
    "deepstack_visual_indexes": [5, 11, 17], "model_type": "qwen3_vl_vision",
    "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0}
  }
}"#;

#[test]
fn hub_moe_config_parses() {
    let c = Config::from_json(HUB_MOE).unwrap();
    assert!(c.is_moe());
    let m = c.moe().unwrap();
    assert_eq!((m.num_experts, m.top_k, m.intermediate_size), (128, 8, 768));
    assert_eq!((c.text.num_kv_heads, c.text.head_dim, c.text.rope_theta), (4, 128, 5e6));
    assert_eq!(c.text.mrope_section, [24, 20, 20]);
    assert_eq!(c.vision.deepstack_visual_indexes, vec![8, 16, 24]);
    assert_eq!(c.eos_token_ids, vec![151645]);
    assert!(!c.tie_word_embeddings);
}

#[test]
fn transformers_5_dense_config_parses() {
    let c = Config::from_json(V5_DENSE).unwrap();
    assert!(!c.is_moe());
    assert!(c.tie_word_embeddings);
    assert_eq!(c.text.intermediate_size, 6144);
    assert_eq!(c.vision.patch_size, 16);
    assert_eq!(c.vision_rope_theta, 10000.0);
    assert_eq!(c.image_token_id, 151655);
}

#[test]
fn moe_config_in_5x_dialect_uses_num_local_experts() {
    let j = HUB_MOE.replace("\"num_experts\": 128", "\"num_local_experts\": 128");
    assert_eq!(Config::from_json(&j).unwrap().moe().unwrap().num_experts, 128);
}

#[test]
fn bad_configs_are_clear_errors() {
    let missing = V5_DENSE.replace("\"hidden_size\": 2048, ", "");
    let e = Config::from_json(&missing).unwrap_err().to_string();
    assert!(e.contains("hidden_size"), "{e}");
    let sections = V5_DENSE.replace("[24, 20, 20]", "[24, 20, 21]");
    assert!(Config::from_json(&sections).unwrap_err().to_string().contains("mrope_section"));
    let heads = V5_DENSE.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 3");
    assert!(Config::from_json(&heads).unwrap_err().to_string().contains("multiple"));
    let out = V5_DENSE.replace("\"out_hidden_size\": 2048", "\"out_hidden_size\": 1024");
    assert!(Config::from_json(&out).unwrap_err().to_string().contains("out_hidden_size"));
    let other = V5_DENSE.replace("\"model_type\": \"qwen3_vl\"", "\"model_type\": \"llama\"");
    assert!(Config::from_json(&other).unwrap_err().to_string().contains("llama"));
    assert!(Config::from_json("{ not json").is_err());
}

#[path = "common/scratch.rs"]
mod scratch;

fn tmp(name: &str) -> scratch::Scratch {
    scratch::Scratch::new(&format!("test-{name}"))
}

fn write_safetensors(path: &std::path::Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| bytemuck::cast_slice(v).to_vec()).collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| (*n, TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn single_and_sharded_safetensors_load_and_check_shapes() {
    let d = tmp("single");
    write_safetensors(&d.join("model.safetensors"), &[("a", vec![2, 3], vec![1.0; 6]), ("b", vec![4], vec![2.0; 4])]);
    let w = Weights::open(&d).unwrap();
    let a = w.expect("a", &[2, 3]).unwrap();
    assert_eq!((a.dtype, a.bytes().unwrap().len()), (DType::F32, 24));
    let e = w.expect("b", &[2, 2]).unwrap_err().to_string();
    assert!(e.contains("`b`") && e.contains("[4]") && e.contains("[2, 2]"), "{e}");
    assert!(w.get("c").unwrap_err().to_string().contains("missing tensor `c`"));

    let s = tmp("sharded");
    write_safetensors(&s.join("model-00001-of-00002.safetensors"), &[("a", vec![2], vec![1.0; 2])]);
    write_safetensors(&s.join("model-00002-of-00002.safetensors"), &[("b", vec![3], vec![2.0; 3])]);
    std::fs::write(
        s.join("model.safetensors.index.json"),
        r#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let w = Weights::open(&s).unwrap();
    let mut names: Vec<&str> = w.names().collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(bytemuck::cast_slice::<u8, f32>(w.get("b").unwrap().bytes().unwrap()), &[2.0; 3]);
}

#[test]
fn truncated_empty_and_missing_files_are_clear_errors() {
    let d = tmp("truncated");
    write_safetensors(&d.join("model.safetensors"), &[("a", vec![64], vec![1.0; 64])]);
    let full = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &full[..full.len() - 10]).unwrap();
    let e = Weights::open(&d).err().unwrap().to_string();
    assert!(e.contains("not a valid safetensors file"), "{e}");
    std::fs::write(d.join("model.safetensors"), b"").unwrap();
    assert!(Weights::open(&d).is_err());
    let none = tmp("none");
    let e = Weights::open(&none).err().unwrap().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    assert!(Config::from_dir(&none).unwrap_err().to_string().contains("config.json"));
}
