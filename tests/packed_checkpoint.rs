//! Pre-quantized compressed-tensors checkpoints (`pack-quantized`, as llm-compressor writes
//! W4A16 / W8A16 models): the dense fixture written with its text decoder's linear weights as
//! `weight_packed` (codes `q + 2^(bits-1)` packed along the inputs), `weight_scale` and
//! `weight_shape`. The loaded codes and scales must reproduce the written weights exactly, the
//! model must follow the full-precision one, and schemes lumen does not read are clear errors.

mod common;

use common::checkpoint::{
    fixture, is_text_linear, logits40, rewrite_dense, tmp, top1_agreement, uploaded, values, Tensor,
};
use lumen::model::qwen3_vl::{Quantization, Qwen3VL};
use lumen::quant::{quantize, QFormat};
use safetensors::Dtype;
use std::path::Path;

fn scheme(bits: usize, group: Option<usize>) -> serde_json::Value {
    let strategy = if group.is_some() { "group" } else { "channel" };
    serde_json::json!({
        "quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
        "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": null, "weights": {
            "num_bits": bits, "type": "int", "symmetric": true, "strategy": strategy, "group_size": group,
            "actorder": null, "dynamic": false}}}
    })
}

/// Writes the dense fixture as a compressed-tensors checkpoint in `dir`: `format` (q4 / q8) in
/// groups of `group` (None: one scale per row); returns each packed weight's values.
fn write_packed(
    dir: &Path,
    format: QFormat,
    group: Option<usize>,
    edit: impl Fn(&mut serde_json::Value),
) -> Vec<(String, Vec<f32>)> {
    let mut values_out = Vec::new();
    let config = |c: &mut serde_json::Value| {
        c["quantization_config"] = scheme(format.bits(), group);
        edit(c);
    };
    rewrite_dense(dir, config, |name, t| {
        if !is_text_linear(name) {
            return None;
        }
        let (n, k) = (t.shape()[0], t.shape()[1]);
        let q = quantize(&values(t), n, k, format, group.unwrap_or(k)).unwrap();
        values_out.push((name.to_string(), q.dequantize()));
        // lumen's q8 codes are two's complement; the checkpoint's are offset by 128.
        let flip = if format == QFormat::Q8 { 0x8080_8080 } else { 0 };
        let words: Vec<u32> = q.codes.iter().map(|w| w ^ flip).collect();
        let scales = lumen::encode(lumen::graph::DType::F16, &q.scales);
        let shape: Vec<u8> = [n as i64, k as i64].iter().flat_map(|v| v.to_le_bytes()).collect();
        let pw = format.per_word();
        let packed: Tensor =
            (format!("{name}_packed"), Dtype::I32, vec![n, k / pw], bytemuck::cast_slice(&words).to_vec());
        Some(vec![
            packed,
            (format!("{name}_scale"), Dtype::F16, vec![n, q.scales.len() / n], scales),
            (format!("{name}_shape"), Dtype::I64, vec![2], shape),
        ])
    });
    values_out
}

#[test]
fn packed_int4_and_int8_weights_load_exactly_and_follow_full_precision() {
    let full = Qwen3VL::load(&fixture("qwen3vl-dense")).unwrap();
    let vocab = full.config.text.vocab_size;
    let run = logits40;
    let reference = run(full);
    for (format, group, want) in [(QFormat::Q4, Some(16), 70), (QFormat::Q8, None, 95)] {
        let dir = tmp(&format!("packed-{}", format.name()));
        let values = write_packed(&dir, format, group, |_| {});
        let m = Qwen3VL::load(&dir).unwrap();
        assert!(m.weight_summary().contains(format.name()), "{}", m.weight_summary());
        assert_eq!(values.len(), m.config.text.num_layers * 7);
        for (name, v) in &values {
            let q = m.quant_of(name).expect("a packed weight is quantized");
            assert_eq!(q.format, format);
            let back = uploaded(&m, name).dequantize(format, q.group);
            assert_eq!(&back, v, "{name}");
        }
        let got = run(m);
        let agree = top1_agreement(&got, &reference, vocab);
        println!("compressed-tensors {}: top-1 agreement {agree}/40 with bf16", format.name());
        assert!(agree * 100 >= want * 40, "{}: {agree}/40", format.name());
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// A change to config.json.
type Edit = dyn Fn(&mut serde_json::Value);

#[test]
fn packed_schemes_lumen_cannot_read_are_clear_errors() {
    let dir = tmp("packed-errors");
    let cases: Vec<(Box<Edit>, &str)> = vec![
        (
            Box::new(|c| {
                let w = &mut c["quantization_config"]["config_groups"]["group_0"]["weights"];
                w["symmetric"] = false.into();
                w["num_bits"] = 8.into();
            }),
            "asymmetric int8",
        ),
        (
            Box::new(|c| c["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 3.into()),
            "3 bits",
        ),
        (
            Box::new(|c| c["quantization_config"]["config_groups"]["group_0"]["weights"]["actorder"] = "group".into()),
            "activation ordering",
        ),
        (Box::new(|c| c["quantization_config"]["format"] = "marlin-24".into()), "marlin-24"),
        (
            Box::new(|c| c["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 32.into()),
            "groups of 32",
        ),
    ];
    for (edit, what) in cases {
        write_packed(&dir, QFormat::Q4, Some(16), edit);
        let err = Qwen3VL::load(&dir).err().expect("refused").to_string();
        assert!(err.contains(what), "{what}: {err}");
    }
    write_packed(&dir, QFormat::Q4, Some(16), |_| {});
    let mut m = Qwen3VL::load(&dir).unwrap();
    let err = m.set_quantization(Some(Quantization::new(QFormat::Q8))).unwrap_err().to_string();
    assert!(err.contains("int4 already"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
