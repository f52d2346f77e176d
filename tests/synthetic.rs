//! Synthetic models: the presets have the published models' shapes, and weights generated on
//! a device (`Op::Random`) equal the same synthetic checkpoint written to disk, on the CPU
//! oracle bit for bit and on wgpu to the last bit of a bf16.

mod common;

use lumen::backend::cpu::CpuBackend;
use lumen::backend::Backend;
use lumen::decode;
use lumen::model::synthetic::{self, SyntheticSpec, PRESETS};
use lumen::model::weights::WeightData;

fn parameters(spec: &SyntheticSpec) -> f64 {
    let m = spec.model(0).unwrap();
    let mut n: Vec<(String, Vec<usize>)> = m.weight_specs();
    n.push((m.lm_head_name().to_string(), vec![]));
    n.sort();
    n.dedup_by(|a, b| a.0 == b.0);
    n.iter().map(|(name, _)| m.weights.get(name).unwrap().shape.iter().product::<usize>() as f64).sum()
}

#[test]
fn presets_have_the_published_parameter_counts() {
    // Parameter counts of the published checkpoints (vision tower included).
    for (preset, billions) in [
        ("qwen3-vl-2b", 2.13),
        ("qwen3-vl-4b", 4.44),
        ("qwen3-vl-8b", 8.77),
        ("qwen3-vl-30b-a3b", 31.07),
        ("qwen3-vl-235b-a22b", 235.7),
    ] {
        let got = parameters(&SyntheticSpec::preset(preset).unwrap()) / 1e9;
        println!("{preset}: {got:.3} B parameters (published {billions} B)");
        assert!((got / billions - 1.0).abs() < 0.02, "{preset}: {got:.3} B parameters, published {billions} B");
    }
    assert!(PRESETS.iter().all(|p| SyntheticSpec::preset(p).is_ok()));
    let e = SyntheticSpec::preset("qwen3-vl-9b").unwrap_err().to_string();
    assert!(e.contains("unknown synthetic preset") && e.contains("qwen3-vl-8b"), "{e}");
    let spec = SyntheticSpec::preset("qwen3-vl-30b-a3b").unwrap();
    assert_eq!(spec.clone().with_layers(2).unwrap().model(1).unwrap().config.text.num_layers, 2);
    for bad in [0, 49] {
        let e = spec.clone().with_layers(bad).unwrap_err().to_string();
        assert!(e.contains("1 to 48"), "{e}");
    }
}

#[test]
fn device_generated_weights_equal_the_written_checkpoint() {
    let spec = SyntheticSpec { dtype: lumen::graph::DType::BF16, ..SyntheticSpec::small_moe() };
    let dir = common::scratch::Scratch::new("synthetic");
    synthetic::write(&dir, &spec, 11).unwrap();
    let stored = lumen::model::qwen3_vl::Qwen3VL::load(&dir).unwrap();
    let generated = spec.model(11).unwrap();
    let cpu = CpuBackend::new();
    let mut backends: Vec<&dyn Backend> = vec![&cpu];
    if let Some(w) = common::wgpu() {
        backends.push(w);
    }
    let mut names: Vec<String> = generated.weight_specs().into_iter().map(|(n, _)| n).collect();
    names.push(generated.lm_head_name().to_string());
    for name in &names {
        let want = stored.weights.get(name).unwrap();
        let view = generated.weights.get(name).unwrap();
        assert!(matches!(view.data, WeightData::Random { .. }), "{name} is not generated");
        assert_eq!(view.desc(), want.desc(), "{name}");
        let want_bytes = want.bytes().unwrap();
        for b in &backends {
            let buf = view.to_device(*b).unwrap();
            let mut got = vec![0u8; want_bytes.len()];
            b.download(buf, &mut got).unwrap();
            b.free(buf);
            let label = b.info().backend;
            if label == "cpu" {
                assert!(got == want_bytes, "{name}: the CPU oracle's values differ from the written checkpoint");
                continue;
            }
            // Another device may round offset + scale * u differently (a fused multiply-add):
            // at most one bf16 step apart.
            let (g, w) = (decode(view.dtype, &got), decode(view.dtype, want_bytes));
            let worst = g.iter().zip(&w).map(|(a, b)| (a - b).abs() / b.abs().max(1e-3)).fold(0f32, f32::max);
            assert!(worst <= 1.0 / 128.0, "{name} on {label}: relative difference {worst}");
        }
    }
}
