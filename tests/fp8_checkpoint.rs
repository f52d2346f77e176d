//! Pre-quantized FP8 checkpoints (Qwen's `-FP8` layout): the dense fixture written with its
//! text decoder's linear weights as E4M3 bytes plus `weight_scale_inv` block scales (blocks
//! of 32 x 32 here, so the fixture's 48- and 80-wide weights have partial blocks on both axes),
//! and `quantization_config` in config.json; the MoE fixture likewise with its experts stored
//! one FP8 matrix per expert, as Qwen's MoE `-FP8` releases store them. The loaded codes and
//! scales must reproduce the checkpoint's weights exactly; the model must follow the
//! full-precision one on greedy tokens; malformed FP8 checkpoints must be clear errors.

mod common;

use common::checkpoint::{
    fixture, is_text_linear, logits40, rewrite_dense, rewrite_moe_per_expert, stack_of, tmp, top1_agreement, values,
    Tensor,
};
use lumen::backend::cpu::CpuBackend;
use lumen::backend::Backend;
use lumen::model::qwen3_vl::{Quantization, Qwen3VL};
use lumen::quant::fp8::{e4m3_to_f32, f32_to_e4m3};
use lumen::quant::{QFormat, Quantized};
use safetensors::Dtype;
use std::path::Path;

const BLOCK: usize = 32;

/// Block-quantizes `w [n, k]`: E4M3 bytes and f32 scales `[ceil(n / B), ceil(k / B)]`.
fn block_fp8(w: &[f32], n: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
    let (rb, cb) = (n.div_ceil(BLOCK), k.div_ceil(BLOCK));
    let mut scales = vec![0f32; rb * cb];
    for r in 0..n {
        for c in 0..k {
            let s = &mut scales[r / BLOCK * cb + c / BLOCK];
            *s = s.max(w[r * k + c].abs() / 448.0);
        }
    }
    let codes = (0..n * k)
        .map(|at| {
            let s = scales[at / k / BLOCK * cb + at % k / BLOCK];
            if s > 0.0 {
                f32_to_e4m3(w[at] / s)
            } else {
                0
            }
        })
        .collect();
    (codes, scales)
}

/// Writes the dense fixture as an FP8 checkpoint in `dir`; returns each FP8 weight's
/// dequantized values (code value times its block's scale) by name.
fn write_fp8(dir: &Path, config_edit: impl Fn(&mut serde_json::Value)) -> Vec<(String, Vec<f32>)> {
    let mut dequantized = Vec::new();
    let edit = |c: &mut serde_json::Value| {
        c["quantization_config"] = serde_json::json!({
            "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [BLOCK, BLOCK]
        });
        config_edit(c);
    };
    rewrite_dense(dir, edit, |name, t| {
        if !is_text_linear(name) {
            return None;
        }
        let (n, k) = (t.shape()[0], t.shape()[1]);
        let (tensors, back) = fp8_tensor(name, &values(t), n, k);
        dequantized.push((name.to_string(), back));
        Some(tensors)
    });
    dequantized
}

#[test]
fn fp8_codes_and_block_scales_load_exactly() {
    let dir = tmp("fp8-exact");
    let want = write_fp8(&dir, |_| {});
    let m = Qwen3VL::load(&dir).unwrap();
    let cpu = CpuBackend::new();
    assert!(m.weight_summary().contains("fp8"), "{}", m.weight_summary());
    assert_eq!(want.len(), m.config.text.num_layers * 7);
    for (name, values) in &want {
        let q = m.quant_of(name).expect("an FP8 weight is quantized");
        assert_eq!(q.format, QFormat::Fp8);
        let (cn, _) = lumen::model::qwen3_vl::quantized_names(name);
        let bufs = m.upload_weight(&cpu, &cn).unwrap();
        let (cd, sd) = m.quantized_descs(name).unwrap();
        let mut codes = vec![0u8; cd.bytes()];
        let mut scales = vec![0u8; sd.bytes()];
        cpu.download(bufs[0].1, &mut codes).unwrap();
        cpu.download(bufs[1].1, &mut scales).unwrap();
        let (n, k) = (cd.shape.0[0], cd.shape.0[1] * 4);
        let back = Quantized {
            format: QFormat::Fp8,
            group: q.group,
            n,
            k,
            codes: bytemuck::pod_collect_to_vec(&codes),
            scales: bytemuck::pod_collect_to_vec(&scales),
            zeros: Vec::new(),
            global: 1.0,
        }
        .dequantize();
        assert_eq!(&back, values, "{name}: group {}", q.group);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_fp8_checkpoint_follows_the_full_precision_model() {
    let dir = tmp("fp8-agree");
    write_fp8(&dir, |_| {});
    let full = Qwen3VL::load(&fixture("qwen3vl-dense")).unwrap();
    let fp8 = Qwen3VL::load(&dir).unwrap();
    let vocab = full.config.text.vocab_size;
    let (a, b) = (logits40(full), logits40(fp8));
    let agree = top1_agreement(&a, &b, vocab);
    let rel = common::rel_err(&b, &a);
    println!("fp8 checkpoint: top-1 agreement {agree}/40 with bf16, logits relative L2 error {rel:.2e}");
    assert!(agree * 100 >= 85 * 40, "{agree}/40");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn malformed_fp8_checkpoints_are_clear_errors() {
    // Another quantization method.
    let dir = tmp("fp8-errors");
    write_fp8(&dir, |c| c["quantization_config"] = serde_json::json!({"quant_method": "hqq", "nbits": 4}));
    let err = Qwen3VL::load(&dir).err().expect("hqq is refused").to_string();
    assert!(err.contains("hqq") && err.contains("not supported"), "{err}");
    // FP8 tensors under an int4 method's config.
    write_fp8(&dir, |c| c["quantization_config"] = serde_json::json!({"quant_method": "awq", "bits": 4}));
    let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
    assert!(err.contains("is FP8 but"), "{err}");
    // FP8 tensors without a quantization_config.
    write_fp8(&dir, |c| {
        c.as_object_mut().unwrap().remove("quantization_config");
    });
    let err = Qwen3VL::load(&dir).err().expect("no quantization_config").to_string();
    assert!(err.contains("FP8") && err.contains("quantization_config"), "{err}");
    // Block scales of the wrong grid.
    write_fp8(&dir, |c| c["quantization_config"]["weight_block_size"] = serde_json::json!([16, 16]));
    let err = Qwen3VL::load(&dir).err().expect("wrong block grid").to_string();
    assert!(err.contains("_scale_inv") && err.contains("16 x 16"), "{err}");
    // Requantizing FP8 weights to another format.
    write_fp8(&dir, |_| {});
    let mut m = Qwen3VL::load(&dir).unwrap();
    let err = m.set_quantization(Some(Quantization::new(QFormat::Q4))).unwrap_err().to_string();
    assert!(err.contains("FP8 already"), "{err}");
    m.set_quantization(Some(Quantization::new(QFormat::Fp8))).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// One FP8 tensor and its scales from `w [n, k]` (row-major); its dequantized values.
fn fp8_tensor(name: &str, w: &[f32], n: usize, k: usize) -> (Vec<Tensor>, Vec<f32>) {
    let (codes, scales) = block_fp8(w, n, k);
    let cb = k.div_ceil(BLOCK);
    let back = (0..n * k).map(|at| e4m3_to_f32(codes[at]) * scales[at / k / BLOCK * cb + at % k / BLOCK]).collect();
    let scale: Tensor =
        (format!("{name}_scale_inv"), Dtype::F32, vec![n.div_ceil(BLOCK), cb], bytemuck::cast_slice(&scales).to_vec());
    (vec![scale, (name.to_string(), Dtype::F8_E4M3, vec![n, k], codes)], back)
}

/// Writes the MoE fixture as an FP8 checkpoint with its experts stored one matrix per expert
/// (leaving out the tensor `skip`); returns each expert stack's dequantized values by name.
fn write_moe_fp8(dir: &Path, skip: Option<&str>) -> Vec<(String, Vec<f32>)> {
    let mut stacks: Vec<(String, Vec<f32>)> = Vec::new();
    let edit = |c: &mut serde_json::Value| {
        c["quantization_config"] = serde_json::json!({"quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK]});
    };
    rewrite_moe_per_expert(&fixture("qwen3vl-moe"), dir, edit, |name, w, n, k| {
        let (tensors, back) = fp8_tensor(name, &w, n, k);
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
    write_moe_fp8(&dir, Some(gone));
    let err = Qwen3VL::load(&dir).err().expect("an expert is missing").to_string();
    assert!(err.contains(gone), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_fp8_moe_checkpoint_with_experts_stored_per_expert_loads_and_follows_bf16() {
    let dir = tmp("fp8-moe");
    let full = Qwen3VL::load(&fixture("qwen3vl-moe")).unwrap();
    let stacks = write_moe_fp8(&dir, None);
    let m = Qwen3VL::load(&dir).unwrap();
    assert!(m.weight_summary().contains("fp8"), "{}", m.weight_summary());
    let cpu = CpuBackend::new();
    assert_eq!(stacks.len(), 2 * m.config.text.num_layers);
    for (name, want) in &stacks {
        let q = m.quant_of(name).expect("a per-expert FP8 stack is quantized");
        let bufs = m.upload_weight(&cpu, &lumen::model::qwen3_vl::quantized_names(name).0).unwrap();
        let (cd, sd) = m.quantized_descs(name).unwrap();
        let (mut codes, mut scales) = (vec![0u8; cd.bytes()], vec![0u8; sd.bytes()]);
        cpu.download(bufs[0].1, &mut codes).unwrap();
        cpu.download(bufs[1].1, &mut scales).unwrap();
        let rows = cd.shape.0[0] * cd.shape.0[1];
        let back = Quantized {
            format: QFormat::Fp8,
            group: q.group,
            n: rows,
            k: cd.shape.0[2] * 4,
            codes: bytemuck::pod_collect_to_vec(&codes),
            scales: bytemuck::pod_collect_to_vec(&scales),
            zeros: Vec::new(),
            global: 1.0,
        }
        .dequantize();
        assert_eq!(&back, want, "{name}: group {}", q.group);
    }
    let vocab = full.config.text.vocab_size;
    let run = logits40;
    let (a, b) = (run(full), run(Qwen3VL::load(&dir).unwrap()));
    let agree = top1_agreement(&a, &b, vocab);
    println!("fp8 MoE checkpoint (experts per expert): top-1 agreement {agree}/40 with bf16");
    assert!(agree * 100 >= 85 * 40, "{agree}/40");
    std::fs::remove_dir_all(&dir).ok();
}
