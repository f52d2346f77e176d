//! Pre-quantized NVFP4 checkpoints, in both dialects: NVIDIA ModelOpt's (`weight` uint8
//! `[N, K / 2]`, the even input in the low nibble; `weight_scale` float8_e4m3fn `[N, K / 16]`;
//! `weight_scale_2` (the global) and `input_scale` f32 scalars; the config in config.json or in
//! hf_quant_config.json) and compressed-tensors' `nvfp4-pack-quantized` (`weight_packed`,
//! `weight_scale`, `weight_global_scale` the global's reciprocal, `input_global_scale`). The
//! dense fixture's text decoder linear weights of 64-multiple inputs are quantized to NVFP4 by
//! lumen and written so; the loaded codes and scales must be lumen's own bit for bit (the global
//! too for ModelOpt, within an ulp through compressed-tensors' reciprocal), the model must
//! follow the full-precision one, and what lumen does not read is a clear error. MoE experts,
//! stored one matrix per expert (gate and up sharing a global scale), load into the layer's
//! stacks: on a tiny random MoE model with 64-wide experts (the MoE fixture's are 40 wide).

mod common;

use common::checkpoint::{
    fixture, is_text_linear, logits40, rewrite_dense, rewrite_moe_per_expert, stack_of, tmp, top1_agreement, uploaded,
    values, Tensor,
};
use common::tiny;
use lumen::backend::cpu::CpuBackend;
use lumen::model::config::Nvfp4Layout;
use lumen::model::qwen3_vl::{global_name, quantized_names, specs, ExpertLayout, Quantization, Qwen3VL};
use lumen::model::Config;
use lumen::quant::{fp8::f32_to_e4m3, quantize, QFormat, Quantized};
use safetensors::Dtype;
use std::path::Path;

/// The `quantization_config` of an NVFP4 export in `layout`.
fn quant_config(layout: Nvfp4Layout) -> serde_json::Value {
    let scheme = serde_json::json!({"num_bits": 4, "type": "float", "group_size": 16});
    match layout {
        Nvfp4Layout::ModelOpt => serde_json::json!({
            "quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"input_activations": scheme, "weights": scheme, "targets": ["Linear"]}}}),
        Nvfp4Layout::CompressedTensors => {
            let mut s = scheme;
            s["strategy"] = "tensor_group".into();
            s["symmetric"] = true.into();
            let mut a = s.clone();
            a["dynamic"] = "local".into();
            serde_json::json!({
                "quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
                "quantization_status": "compressed", "ignore": ["lm_head", "re:.*mlp.gate$"], "kv_cache_scheme": null,
                "config_groups": {"group_0": {"format": "nvfp4-pack-quantized", "input_activations": a,
                    "weights": s, "output_activations": null, "targets": ["Linear"]}}})
        }
    }
}

/// A weight quantized as `q` in the tensors of `layout` (ModelOpt's with an FP8 KV cache's k / v
/// scales).
fn nvfp4_tensors(layout: Nvfp4Layout, name: &str, q: &Quantized) -> Vec<Tensor> {
    let (n, k) = (q.n, q.k);
    let code = |at: usize| ((q.codes[at / 8] >> (4 * (at % 8))) & 15) as u8;
    // Byte j of a row: input 2j in the low nibble, 2j + 1 in the high one.
    let bytes: Vec<u8> = (0..n * k / 2).map(|b| code(2 * b) | code(2 * b + 1) << 4).collect();
    let scales: Vec<u8> = q.scales.iter().map(|&s| f32_to_e4m3(s)).collect();
    let [codes, scale, global, input] = layout.parts(name);
    let f32_tensor = |name: String, v: f32| (name, Dtype::F32, vec![], v.to_le_bytes().to_vec());
    let mut t = vec![(codes, Dtype::U8, vec![n, k / 2], bytes), (scale, Dtype::F8_E4M3, vec![n, k / 16], scales)];
    match layout {
        Nvfp4Layout::ModelOpt => {
            t.push(f32_tensor(global, q.global));
            t.push(f32_tensor(input, 0.01));
            let module = name.strip_suffix(".weight").unwrap();
            for x in ["k", "v"].iter().filter(|x| module.ends_with(&format!("{x}_proj"))) {
                t.push(f32_tensor(format!("{module}.{x}_scale"), 1.5));
            }
        }
        // compressed-tensors stores the global's reciprocal, with shape [1].
        Nvfp4Layout::CompressedTensors => {
            for (name, v) in [(global, 1.0 / q.global), (input, 100.0)] {
                t.push((name, Dtype::F32, vec![1], v.to_le_bytes().to_vec()));
            }
        }
    }
    t
}

/// The global scale lumen takes from `q`'s as `layout` stores it.
fn global_through(layout: Nvfp4Layout, q: &Quantized) -> f32 {
    match layout {
        Nvfp4Layout::ModelOpt => q.global,
        Nvfp4Layout::CompressedTensors => 1.0 / (1.0 / q.global),
    }
}

/// Writes the dense fixture as an NVFP4 checkpoint in `layout` into `dir` (its config edited by
/// `edit`, each weight's tensors by `tamper`); returns the NVFP4 weights' quantizations.
fn write(
    dir: &Path,
    layout: Nvfp4Layout,
    edit: impl Fn(&mut serde_json::Value),
    tamper: impl Fn(&mut Vec<Tensor>),
) -> Vec<(String, Quantized)> {
    let mut out = Vec::new();
    let config = |c: &mut serde_json::Value| {
        c["quantization_config"] = quant_config(layout);
        edit(c);
    };
    rewrite_dense(dir, config, |name, t| {
        let (n, k) = (t.shape()[0], *t.shape().last().unwrap());
        // The exporters quantize every linear layer; lumen's NVFP4 takes inputs of a multiple
        // of 64 (the others stay bf16, as excluded modules do).
        if !is_text_linear(name) || k % 64 != 0 {
            return None;
        }
        let q = quantize(&values(t), n, k, QFormat::Nvfp4, 16).unwrap();
        let mut tensors = nvfp4_tensors(layout, name, &q);
        tamper(&mut tensors);
        out.push((name.to_string(), q));
        Some(tensors)
    });
    out
}

#[test]
fn nvfp4_checkpoints_load_exactly_and_follow_full_precision() {
    let cpu = CpuBackend::new();
    let full = Qwen3VL::load(&fixture("qwen3vl-dense")).unwrap();
    let vocab = full.config.text.vocab_size;
    let run = logits40;
    let reference = run(full);
    // ModelOpt's config in config.json, then in hf_quant_config.json (as older exports put it);
    // compressed-tensors'.
    let exports = [
        (Nvfp4Layout::ModelOpt, false, "ModelOpt NVFP4 (config inside)"),
        (Nvfp4Layout::ModelOpt, true, "ModelOpt NVFP4 (config beside)"),
        (Nvfp4Layout::CompressedTensors, false, "compressed-tensors NVFP4"),
    ];
    for (layout, beside, label) in exports {
        let dir = tmp(&format!("nvfp4-{layout:?}-{beside}"));
        let written = write(
            &dir,
            layout,
            |c| {
                if beside {
                    c.as_object_mut().unwrap().remove("quantization_config");
                }
            },
            |_| {},
        );
        if beside {
            let hf = serde_json::json!({"producer": {"name": "modelopt"}, "quantization": {
                "quant_algo": "NVFP4", "kv_cache_quant_algo": null, "group_size": 16, "exclude_modules": ["lm_head"]}});
            std::fs::write(dir.join("hf_quant_config.json"), hf.to_string()).unwrap();
        }
        let m = Qwen3VL::load(&dir).unwrap();
        assert!(m.weight_summary().contains("nvfp4"), "{}", m.weight_summary());
        assert!(!written.is_empty());
        for (name, q) in &written {
            assert_eq!(m.quant_of(name).map(|q| (q.format, q.group)), Some((QFormat::Nvfp4, 16)));
            let bufs = m.upload_weight(&cpu, &quantized_names(name).0).unwrap();
            assert_eq!(bufs[2].0, global_name(name));
            let up = uploaded(&m, name);
            assert_eq!(up.words(), q.codes, "{name}: codes");
            assert_eq!(up.scales, q.scales_tensor().unwrap().bytes, "{name}: scales");
            let global = f32::from_le_bytes(up.global[..].try_into().unwrap());
            assert_eq!(global, global_through(layout, q), "{name}: global scale");
            assert!((global - q.global).abs() <= q.global * f32::EPSILON, "{name}: {global} vs {}", q.global);
        }
        let agree = top1_agreement(&run(m), &reference, vocab);
        println!("{label}: top-1 agreement {agree}/40 with bf16");
        assert!(agree * 100 >= 60 * 40, "{agree}/40");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// A change to config.json.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;
/// A change to one weight's tensors.
type Tamper = Box<dyn Fn(&mut Vec<Tensor>)>;

#[test]
fn nvfp4_checkpoints_lumen_cannot_read_are_clear_errors() {
    let dir = tmp("nvfp4-errors");
    let keep = || -> Edit { Box::new(|_| {}) };
    let untouched = || -> Tamper { Box::new(|_| {}) };
    let (mo, ct) = (Nvfp4Layout::ModelOpt, Nvfp4Layout::CompressedTensors);
    let cases: Vec<(Nvfp4Layout, Edit, Tamper, &str)> = vec![
        (mo, Box::new(|c| c["quantization_config"]["quant_algo"] = "FP8".into()), untouched(), "quant_algo `FP8`"),
        (mo, Box::new(|c| group0(c)["weights"]["group_size"] = 32.into()), untouched(), "groups of 32"),
        (
            mo,
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("quantization_config");
            }),
            untouched(),
            "packed FP4",
        ),
        (mo, keep(), Box::new(|t| t.retain(|t| !t.0.ends_with("_scale_2"))), "global scale"),
        (mo, keep(), Box::new(|t| t.retain(|t| !t.0.ends_with("weight_scale"))), "weight_scale"),
        (
            mo,
            keep(),
            Box::new(|t| {
                let s = t.iter_mut().find(|t| t.0.ends_with("weight_scale")).unwrap();
                s.1 = Dtype::U8;
            }),
            "float8_e4m3fn",
        ),
        (ct, Box::new(|c| group0(c)["weights"]["num_bits"] = 8.into()), untouched(), "lumen reads NVFP4"),
        (ct, Box::new(|c| group0(c)["weights"]["strategy"] = "group".into()), untouched(), "by \"group\""),
        (
            ct,
            Box::new(|c| group0(c)["input_activations"] = serde_json::json!({"num_bits": 8, "type": "int"})),
            untouched(),
            "activations of type \"int\" with 8 bits",
        ),
        (ct, Box::new(|c| group0(c)["format"] = "pack-quantized".into()), untouched(), "format `pack-quantized`"),
        (ct, keep(), Box::new(|t| t.retain(|t| !t.0.ends_with("weight_global_scale"))), "global scale"),
        (
            ct,
            Box::new(|c| c["quantization_config"]["config_groups"] = serde_json::json!({})),
            untouched(),
            "no config_groups",
        ),
        (
            ct,
            keep(),
            Box::new(|t| {
                let shape = vec![t[0].2[0], t[0].2[1] / 4];
                t[0].1 = Dtype::I32;
                t[0].2 = shape;
            }),
            "NVFP4 codes (`_packed`) are uint8",
        ),
        (
            ct,
            keep(),
            Box::new(|t| t[0].0 = t[0].0.strip_suffix("_packed").unwrap().to_string()),
            "named `X.weight_packed`",
        ),
    ];
    for (layout, edit, tamper, what) in cases {
        write(&dir, layout, edit, tamper);
        let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
        println!("{err}");
        assert!(err.contains(what), "{what}: {err}");
    }
    let cpu = CpuBackend::new();
    let upload_error = |dir: &Path| {
        let m = Qwen3VL::load(dir).unwrap();
        m.device_weights().into_iter().find_map(|w| m.upload_weight(&cpu, &w).err()).expect("refused").to_string()
    };
    // A global scale of 0 in compressed-tensors' reciprocal stops the upload, naming the tensor.
    let zero =
        |t: &mut Vec<Tensor>| t.iter_mut().find(|t| t.0.ends_with("weight_global_scale")).unwrap().3 = vec![0; 4];
    write(&dir, ct, |_| {}, zero);
    let err = upload_error(&dir);
    assert!(err.contains("weight_global_scale` holds 0"), "{err}");
    // So does a negative ModelOpt global.
    let negative = |t: &mut Vec<Tensor>| {
        t.iter_mut().find(|t| t.0.ends_with("_scale_2")).unwrap().3 = (-1f32).to_le_bytes().to_vec()
    };
    write(&dir, mo, |_| {}, negative);
    let err = upload_error(&dir);
    assert!(err.contains("must be positive"), "{err}");
    // A NaN scale code stops the upload, naming the tensor.
    write(&dir, mo, |_| {}, |t| t.iter_mut().find(|t| t.0.ends_with("weight_scale")).unwrap().3[5] = 0x7f);
    let bad = upload_error(&dir);
    assert!(bad.contains("NaN code"), "{bad}");
    // Quantizing NVFP4 weights again is refused.
    let mut m = Qwen3VL::load(&dir).unwrap();
    let err = m.set_quantization(Some(Quantization::new(QFormat::Q4))).unwrap_err().to_string();
    assert!(err.contains("NVFP4 already"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A tiny random MoE checkpoint (hub expert layout) whose experts have 64 inputs and outputs.
fn wide_moe(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let json = tiny::config_json(true, true, false)
        .replace(r#""hidden_size": 48"#, r#""hidden_size": 64"#)
        .replace(r#""out_hidden_size": 48"#, r#""out_hidden_size": 64"#)
        .replace(r#""moe_intermediate_size": 40"#, r#""moe_intermediate_size": 64"#);
    std::fs::write(dir.join("config.json"), &json).unwrap();
    let config = Config::from_json(&json).unwrap();
    let mut tensors = specs(&config, "model.language_model.", "model.visual.", "lm_head.weight", ExpertLayout::Hub);
    tensors.sort();
    tiny::write_tensors(&dir.join("model.safetensors"), &tensors, 0.15);
}

/// An expert stack's name, code words, scale bytes and global scales.
type Stack = (String, Vec<u32>, Vec<u8>, Vec<f32>);

/// Writes `src` (a MoE checkpoint) as NVFP4 in `layout` into `dir`, experts per expert, each
/// expert's gate and up quantized together (one global scale); `tamper` edits the tensors of
/// each gate-up pair. Returns each stack's expected codes, scale bytes and global scales.
fn write_moe(src: &Path, dir: &Path, layout: Nvfp4Layout, tamper: impl Fn(&mut Vec<Tensor>)) -> Vec<Stack> {
    let mut stacks: Vec<Stack> = Vec::new();
    let mut gate: Option<(String, Vec<f32>)> = None;
    rewrite_moe_per_expert(
        src,
        dir,
        |c| c["quantization_config"] = quant_config(layout),
        |name, w, n, k| {
            let Some(stack) = stack_of(name) else {
                if k % 64 != 0 {
                    return vec![];
                }
                return nvfp4_tensors(layout, name, &quantize(&w, n, k, QFormat::Nvfp4, 16).unwrap());
            };
            if name.ends_with("gate_proj.weight") {
                gate = Some((name.to_string(), w));
                return vec![];
            }
            let (q, tensors) = if name.ends_with("up_proj.weight") {
                let (gname, gw) = gate.take().unwrap();
                let both = quantize(&[gw, w].concat(), 2 * n, k, QFormat::Nvfp4, 16).unwrap();
                let half = |rows: std::ops::Range<usize>| Quantized {
                    n,
                    codes: both.codes[rows.start * k / 8..rows.end * k / 8].to_vec(),
                    scales: both.scales[rows.start * k / 16..rows.end * k / 16].to_vec(),
                    ..both.clone()
                };
                let mut t = nvfp4_tensors(layout, &gname, &half(0..n));
                t.extend(nvfp4_tensors(layout, name, &half(n..2 * n)));
                tamper(&mut t);
                (both, t)
            } else {
                let q = quantize(&w, n, k, QFormat::Nvfp4, 16).unwrap();
                let t = nvfp4_tensors(layout, name, &q);
                (q, t)
            };
            if !stacks.iter().any(|s| s.0 == stack) {
                stacks.push((stack.clone(), vec![], vec![], vec![]));
            }
            let s = stacks.iter_mut().find(|s| s.0 == stack).unwrap();
            s.1.extend(&q.codes);
            s.2.extend(q.scales_tensor().unwrap().bytes);
            s.3.push(global_through(layout, &q));
            tensors
        },
    );
    stacks
}

#[test]
fn nvfp4_moe_experts_stored_per_expert_load_into_the_stacks() {
    let src = tmp("nvfp4-moe-src");
    wide_moe(&src);
    let cpu = CpuBackend::new();
    let run = logits40;
    let reference = run(Qwen3VL::load(&src).unwrap());
    // The same model quantized to NVFP4 as it loads (each expert's gate and up together, as
    // here) must give the same logits; this tiny random model strays far from bf16 in NVFP4
    // (reported only).
    let mut at_load = Qwen3VL::load(&src).unwrap();
    at_load.set_quantization(Some(Quantization::new(QFormat::Nvfp4))).unwrap();
    let at_load = run(at_load);
    for layout in [Nvfp4Layout::ModelOpt, Nvfp4Layout::CompressedTensors] {
        let dir = tmp(&format!("nvfp4-moe-{layout:?}"));
        let stacks = write_moe(&src, &dir, layout, |_| {});
        let m = Qwen3VL::load(&dir).unwrap();
        assert_eq!(stacks.len(), 2 * m.config.text.num_layers);
        for (name, codes_want, scales_want, globals_want) in &stacks {
            assert_eq!(m.quant_of(name).map(|q| q.format), Some(QFormat::Nvfp4), "{name}");
            let up = uploaded(&m, name);
            assert_eq!(&up.words(), codes_want, "{name}: codes");
            assert_eq!(&up.scales, scales_want, "{name}: scales");
            assert_eq!(&bytemuck::pod_collect_to_vec::<u8, f32>(&up.global), globals_want, "{name}: globals");
        }
        let vocab = m.config.text.vocab_size;
        let got = run(m);
        let (agree, rel) = (top1_agreement(&got, &reference, vocab), common::rel_err(&got, &reference));
        println!(
            "{layout:?} NVFP4 MoE (experts per expert): top-1 agreement {agree}/40 with bf16, logits error {rel:.2e}"
        );
        let vs_at_load = common::rel_err(&got, &at_load);
        assert!(vs_at_load < 1e-6, "the checkpoint's model differs from NVFP4 at load by {vs_at_load:e}");
        // An expert whose gate and up global scales differ is refused at upload, naming both.
        let up_global = layout.parts("up_proj.weight")[2].clone();
        write_moe(&src, &dir, layout, |t| {
            let g = t.iter_mut().find(|t| t.0.ends_with(&up_global)).unwrap();
            g.3 = (f32::from_le_bytes(g.3[..4].try_into().unwrap()) * 2.0).to_le_bytes().to_vec();
        });
        let m = Qwen3VL::load(&dir).unwrap();
        let gate_up = stacks.iter().find(|s| s.0.ends_with("gate_up_proj")).unwrap();
        let codes_of_up = layout.parts("up_proj.weight")[0].clone();
        let err = m.upload_weight(&cpu, &quantized_names(&gate_up.0).0).expect_err("refused").to_string();
        assert!(err.contains("one NVFP4 global scale") && err.contains(&up_global), "{err}");
        // A missing expert matrix is named by the tensor the checkpoint lacks.
        write_moe(&src, &dir, layout, |t| t.retain(|t| !t.0.ends_with(&codes_of_up)));
        let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
        assert!(err.contains("missing NVFP4 expert tensor") && err.contains(&codes_of_up), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
    std::fs::remove_dir_all(&src).ok();
}

/// The first config group of a compressed-tensors `quantization_config` in config.json `c`.
fn group0(c: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut c["quantization_config"]["config_groups"]["group_0"]
}
