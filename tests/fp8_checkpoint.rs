//! Pre-quantized FP8 checkpoints: the dense fixture written with its text decoder's linear
//! weights as E4M3 bytes plus scales, in Qwen's `-FP8` layout (`weight_scale_inv` per block of
//! 32 x 32 here, so the fixture's 48- and 80-wide weights have partial blocks on both axes) and
//! in compressed-tensors' `float-quantized` ones (`weight_scale` by channel in bf16, by tensor
//! with static input and KV-cache scales, by block); the MoE fixture likewise with its experts
//! stored one FP8 matrix per expert, as Qwen's MoE `-FP8` releases and llm-compressor store
//! them. The loaded codes and scales must reproduce the checkpoint's weights exactly; the model
//! must follow the full-precision one; malformed FP8 checkpoints must be clear errors.

mod common;

use common::checkpoint::{
    fixture, is_text_linear, logits40, rewrite_dense, rewrite_moe_per_expert, stack_of, tmp, top1_agreement, uploaded,
    values, Tensor,
};
use lumen::model::qwen3_vl::{Quantization, Qwen3VL};
use lumen::quant::fp8::{e4m3_to_f32, f32_to_e4m3};
use lumen::quant::QFormat;
use safetensors::Dtype;
use std::path::Path;

const BLOCK: usize = 32;
const ALL: usize = usize::MAX;

/// How a checkpoint scales and names its FP8 weights.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scheme {
    /// Qwen's `-FP8`: `quant_method: fp8`, `weight_scale_inv` f32 per block of 32 x 32.
    QwenBlocks,
    /// compressed-tensors `float-quantized` by channel: `weight_scale` bf16 `[N, 1]`.
    CtChannel,
    /// compressed-tensors by tensor: `weight_scale` f32 `[1]`, static activations (an
    /// `input_scale` per module) and an FP8 KV cache's `k_scale` / `v_scale`.
    CtTensor,
    /// compressed-tensors by block of 32 x 32: `weight_scale` f32.
    CtBlocks,
}

const SCHEMES: [Scheme; 4] = [Scheme::QwenBlocks, Scheme::CtChannel, Scheme::CtTensor, Scheme::CtBlocks];

impl Scheme {
    /// Rows x inputs per scale.
    fn block(self) -> [usize; 2] {
        match self {
            Scheme::QwenBlocks | Scheme::CtBlocks => [BLOCK, BLOCK],
            Scheme::CtChannel => [1, ALL],
            Scheme::CtTensor => [ALL, ALL],
        }
    }

    fn quantization_config(self) -> serde_json::Value {
        let (strategy, activations) = match self {
            Scheme::QwenBlocks => {
                return serde_json::json!({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                    "weight_block_size": [BLOCK, BLOCK]})
            }
            Scheme::CtChannel => ("channel", serde_json::json!({"strategy": "token", "dynamic": true})),
            Scheme::CtTensor => ("tensor", serde_json::json!({"strategy": "tensor", "dynamic": false})),
            Scheme::CtBlocks => {
                ("block", serde_json::json!({"strategy": "group", "group_size": BLOCK, "dynamic": true}))
            }
        };
        let mut weights = serde_json::json!({"num_bits": 8, "type": "float", "symmetric": true, "dynamic": false,
            "strategy": strategy});
        if self == Scheme::CtBlocks {
            weights["block_structure"] = serde_json::json!([BLOCK, BLOCK]);
        }
        let mut activations = activations;
        activations["num_bits"] = 8.into();
        activations["type"] = "float".into();
        let kv = (self == Scheme::CtTensor)
            .then(|| serde_json::json!({"num_bits": 8, "type": "float", "strategy": "tensor"}));
        serde_json::json!({"quant_method": "compressed-tensors", "format": "float-quantized",
            "quantization_status": "compressed", "ignore": ["lm_head"], "kv_cache_scheme": kv,
            "config_groups": {"group_0": {"weights": weights, "input_activations": activations, "targets": ["Linear"]}}})
    }

    /// The scale tensor of weight `name` holding `scales` (the `grid` of blocks).
    fn scale_tensor(self, name: &str, scales: &[f32], grid: [usize; 2]) -> Tensor {
        let f32s = |v: &[f32]| bytemuck::cast_slice(v).to_vec();
        match self {
            Scheme::QwenBlocks => (format!("{name}_scale_inv"), Dtype::F32, grid.to_vec(), f32s(scales)),
            Scheme::CtChannel => {
                let bf16: Vec<u8> = scales.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
                (format!("{name}_scale"), Dtype::BF16, grid.to_vec(), bf16)
            }
            Scheme::CtTensor => (format!("{name}_scale"), Dtype::F32, vec![1], f32s(scales)),
            Scheme::CtBlocks => (format!("{name}_scale"), Dtype::F32, grid.to_vec(), f32s(scales)),
        }
    }

    /// A scale as the checkpoint can store it (bf16 by channel).
    fn stored(self, v: f32) -> f32 {
        match self {
            Scheme::CtChannel => half::bf16::from_f32(v).to_f32(),
            _ => v,
        }
    }
}

/// Quantizes `w [n, k]` in `scheme`'s blocks: E4M3 bytes and the scales of the block grid.
fn block_fp8(scheme: Scheme, w: &[f32], n: usize, k: usize) -> (Vec<u8>, Vec<f32>, [usize; 2]) {
    let [bn, bk] = scheme.block();
    let (rb, cb) = (n.div_ceil(bn), k.div_ceil(bk));
    let mut scales = vec![0f32; rb * cb];
    for r in 0..n {
        for c in 0..k {
            let s = &mut scales[r / bn * cb + c / bk];
            *s = s.max(w[r * k + c].abs() / 448.0);
        }
    }
    // bf16 scales round down or up: codes from the stored scale (E4M3 saturates at 448).
    scales.iter_mut().for_each(|s| *s = scheme.stored(*s));
    let codes = (0..n * k)
        .map(|at| {
            let s = scales[at / k / bn * cb + at % k / bk];
            if s > 0.0 {
                f32_to_e4m3((w[at] / s).clamp(-448.0, 448.0))
            } else {
                0
            }
        })
        .collect();
    (codes, scales, [rb, cb])
}

/// Writes the dense fixture as an FP8 checkpoint in `scheme` in `dir`; returns each FP8
/// weight's dequantized values (code value times its block's scale) by name.
fn write_fp8(dir: &Path, scheme: Scheme, config_edit: impl Fn(&mut serde_json::Value)) -> Vec<(String, Vec<f32>)> {
    let mut dequantized = Vec::new();
    let edit = |c: &mut serde_json::Value| {
        c["quantization_config"] = scheme.quantization_config();
        config_edit(c);
    };
    rewrite_dense(dir, edit, |name, t| {
        if !is_text_linear(name) {
            return None;
        }
        let (n, k) = (t.shape()[0], t.shape()[1]);
        let (tensors, back) = fp8_tensor(scheme, name, &values(t), n, k);
        dequantized.push((name.to_string(), back));
        Some(tensors)
    });
    dequantized
}

#[test]
fn fp8_codes_and_block_scales_load_exactly() {
    for scheme in SCHEMES {
        codes_and_scales_load_exactly(scheme);
    }
}

fn codes_and_scales_load_exactly(scheme: Scheme) {
    let dir = tmp(&format!("fp8-exact-{scheme:?}"));
    let want = write_fp8(&dir, scheme, |_| {});
    let m = Qwen3VL::load(&dir).unwrap();
    assert!(m.weight_summary().contains("fp8"), "{}", m.weight_summary());
    assert_eq!(want.len(), m.config.text.num_layers * 7);
    for (name, values) in &want {
        let q = m.quant_of(name).expect("an FP8 weight is quantized");
        assert_eq!(q.format, QFormat::Fp8);
        let back = uploaded(&m, name).dequantize(QFormat::Fp8, q.group);
        assert_eq!(&back, values, "{scheme:?} {name}: group {}", q.group);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_fp8_checkpoint_follows_the_full_precision_model() {
    let full = logits40(Qwen3VL::load(&fixture("qwen3vl-dense")).unwrap());
    for scheme in SCHEMES {
        let dir = tmp(&format!("fp8-agree-{scheme:?}"));
        write_fp8(&dir, scheme, |_| {});
        let fp8 = Qwen3VL::load(&dir).unwrap();
        let vocab = fp8.config.text.vocab_size;
        let b = logits40(fp8);
        let agree = top1_agreement(&full, &b, vocab);
        let rel = common::rel_err(&b, &full);
        println!(
            "fp8 checkpoint ({scheme:?}): top-1 agreement {agree}/40 with bf16, logits relative L2 error {rel:.2e}"
        );
        // The fixture's logits are nearly flat, so top-1 flips with noise (by channel: 33/40 at a
        // lower logits error than 32 x 32 blocks' 37/40); the logits error is the firmer bound.
        assert!(agree * 100 >= 75 * 40 && rel < 0.12, "{scheme:?}: {agree}/40, {rel:.2e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn malformed_fp8_checkpoints_are_clear_errors() {
    // Another quantization method.
    let dir = tmp("fp8-errors");
    write_fp8(&dir, Scheme::QwenBlocks, |c| {
        c["quantization_config"] = serde_json::json!({"quant_method": "hqq", "nbits": 4})
    });
    let err = Qwen3VL::load(&dir).err().expect("hqq is refused").to_string();
    assert!(err.contains("hqq") && err.contains("not supported"), "{err}");
    // FP8 tensors under an int4 method's config.
    write_fp8(&dir, Scheme::QwenBlocks, |c| {
        c["quantization_config"] = serde_json::json!({"quant_method": "awq", "bits": 4})
    });
    let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
    assert!(err.contains("is FP8 but"), "{err}");
    // FP8 tensors without a quantization_config.
    write_fp8(&dir, Scheme::QwenBlocks, |c| {
        c.as_object_mut().unwrap().remove("quantization_config");
    });
    let err = Qwen3VL::load(&dir).err().expect("no quantization_config").to_string();
    assert!(err.contains("FP8") && err.contains("quantization_config"), "{err}");
    // Block scales of the wrong grid.
    write_fp8(&dir, Scheme::QwenBlocks, |c| {
        c["quantization_config"]["weight_block_size"] = serde_json::json!([16, 16])
    });
    let err = Qwen3VL::load(&dir).err().expect("wrong block grid").to_string();
    assert!(err.contains("_scale_inv") && err.contains("16 x 16"), "{err}");
    // compressed-tensors schemes lumen does not read as FP8 weights, and a scale of the wrong
    // shape.
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Scheme, Edit, &str); 5] = [
        (
            Scheme::CtChannel,
            |c| group0(c)["weights"]["type"] = "int".into(),
            "float-quantized is read as symmetric FP8",
        ),
        (Scheme::CtChannel, |c| group0(c)["weights"]["strategy"] = "group".into(), "by `group`"),
        (
            Scheme::CtBlocks,
            |c| {
                let w = &mut group0(c)["weights"];
                w.as_object_mut().unwrap().remove("block_structure");
            },
            "without a block_structure",
        ),
        (Scheme::CtChannel, |c| group0(c)["input_activations"]["type"] = "int".into(), "activations of type \"int\""),
        (Scheme::CtChannel, |c| group0(c)["weights"]["strategy"] = "tensor".into(), "one scale per tensor"),
    ];
    for (scheme, edit, what) in cases {
        write_fp8(&dir, scheme, edit);
        let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
        assert!(err.contains(what), "{what}: {err}");
    }
    // Requantizing FP8 weights to another format.
    write_fp8(&dir, Scheme::QwenBlocks, |_| {});
    let mut m = Qwen3VL::load(&dir).unwrap();
    let err = m.set_quantization(Some(Quantization::new(QFormat::Q4))).unwrap_err().to_string();
    assert!(err.contains("FP8 already"), "{err}");
    m.set_quantization(Some(Quantization::new(QFormat::Fp8))).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// One FP8 tensor and its scales from `w [n, k]` (row-major) in `scheme`, with the module's
/// input scale and an attention's KV-cache scales where the scheme has them; its dequantized
/// values.
fn fp8_tensor(scheme: Scheme, name: &str, w: &[f32], n: usize, k: usize) -> (Vec<Tensor>, Vec<f32>) {
    let (codes, scales, grid) = block_fp8(scheme, w, n, k);
    let [bn, bk] = scheme.block();
    let back = (0..n * k).map(|at| e4m3_to_f32(codes[at]) * scales[at / k / bn * grid[1] + at % k / bk]).collect();
    let mut t = vec![scheme.scale_tensor(name, &scales, grid), (name.to_string(), Dtype::F8_E4M3, vec![n, k], codes)];
    if scheme == Scheme::CtTensor {
        let one = |n: String| (n, Dtype::F32, vec![1], 0.02f32.to_le_bytes().to_vec());
        let module = name.strip_suffix(".weight").unwrap();
        t.push(one(format!("{module}.input_scale")));
        if let Some(attn) = module.strip_suffix(".k_proj") {
            t.extend([one(format!("{attn}.k_scale")), one(format!("{attn}.v_scale"))]);
        }
    }
    (t, back)
}

/// Writes the MoE fixture as an FP8 checkpoint in `scheme` with its experts stored one matrix
/// per expert (leaving out the tensor `skip`); returns each expert stack's dequantized values
/// by name.
fn write_moe_fp8(dir: &Path, scheme: Scheme, skip: Option<&str>) -> Vec<(String, Vec<f32>)> {
    let mut stacks: Vec<(String, Vec<f32>)> = Vec::new();
    let edit = |c: &mut serde_json::Value| c["quantization_config"] = scheme.quantization_config();
    rewrite_moe_per_expert(&fixture("qwen3vl-moe"), dir, edit, |name, w, n, k| {
        let (tensors, back) = fp8_tensor(scheme, name, &w, n, k);
        let Some(stack) = stack_of(name) else { return tensors };
        match stacks.iter_mut().find(|(s, _)| *s == stack) {
            Some((_, v)) => v.extend(back),
            None => stacks.push((stack, back)),
        }
        if skip == Some(name) {
            return vec![];
        }
        tensors
    });
    stacks
}

#[test]
fn a_missing_expert_of_an_fp8_moe_checkpoint_is_named() {
    let dir = tmp("fp8-moe-missing");
    // Expert 0, whose tensors also tell that a layer is stored per expert.
    let gone = "model.language_model.layers.0.mlp.experts.0.gate_proj.weight";
    write_moe_fp8(&dir, Scheme::QwenBlocks, Some(gone));
    let err = Qwen3VL::load(&dir).err().expect("an expert is missing").to_string();
    assert!(err.contains(gone), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_fp8_moe_checkpoint_with_experts_stored_per_expert_loads_and_follows_bf16() {
    for scheme in [Scheme::QwenBlocks, Scheme::CtChannel] {
        moe_loads_and_follows_bf16(scheme);
    }
}

fn moe_loads_and_follows_bf16(scheme: Scheme) {
    let dir = tmp(&format!("fp8-moe-{scheme:?}"));
    let full = Qwen3VL::load(&fixture("qwen3vl-moe")).unwrap();
    let stacks = write_moe_fp8(&dir, scheme, None);
    let m = Qwen3VL::load(&dir).unwrap();
    assert!(m.weight_summary().contains("fp8"), "{}", m.weight_summary());
    assert_eq!(stacks.len(), 2 * m.config.text.num_layers);
    for (name, want) in &stacks {
        let q = m.quant_of(name).expect("a per-expert FP8 stack is quantized");
        let back = uploaded(&m, name).dequantize(QFormat::Fp8, q.group);
        assert_eq!(&back, want, "{name}: group {}", q.group);
    }
    let vocab = full.config.text.vocab_size;
    let run = logits40;
    let (a, b) = (run(full), run(Qwen3VL::load(&dir).unwrap()));
    let (agree, rel) = (top1_agreement(&a, &b, vocab), common::rel_err(&b, &a));
    println!("fp8 MoE checkpoint ({scheme:?}, experts per expert): top-1 agreement {agree}/40 with bf16, logits error {rel:.2e}");
    // A flipped expert choice moves the logits more than the dense model's (by channel: 1.3e-1
    // at 32/40, 32 x 32 blocks: 9.8e-2 at 36/40, though E4M3's error barely depends on the grid).
    assert!(agree * 100 >= 75 * 40 && rel < 0.16, "{scheme:?}: {agree}/40, {rel:.2e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The first config group of a compressed-tensors `quantization_config` in config.json `c`.
fn group0(c: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut c["quantization_config"]["config_groups"]["group_0"]
}
