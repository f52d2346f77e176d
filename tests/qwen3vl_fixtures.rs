//! Qwen3-VL against HF transformers: the committed tiny dense and MoE fixtures
//! (tests/fixtures, made by xtask/fixtures/make_fixtures.py) on the CPU oracle and on wgpu.
//! Input ids, pixel values, image features, logits at every prompt position and 16 greedy
//! tokens must match the reference.

mod common;

use lumen::backend::cpu::CpuBackend;
use lumen::backend::Backend;
use lumen::engine::sampler::SamplingOptions;
use lumen::engine::{GenerateOptions, Session};
use lumen::io::chat::{Message, Part};
use lumen::model::processor::Processor;
use lumen::model::qwen3_vl::{Pixels, PrefillInputs, Qwen3VL};
use lumen::selftest::golden;
use std::path::{Path, PathBuf};

const MODELS: [&str; 4] = ["qwen3vl-dense", "qwen3vl-moe", "qwen3vl-dense-trained", "qwen3vl-moe-trained"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture's reference (transformers' inputs and outputs); a missing tensor panics.
struct Reference(golden::Reference);

impl Reference {
    fn load(model: &str) -> Self {
        Reference(golden::Reference::open(&fixtures().join(model)).unwrap())
    }
    fn f32s(&self, name: &str) -> Vec<f32> {
        self.0.f32s(name).unwrap()
    }
    fn i32s(&self, name: &str) -> Vec<i32> {
        self.0.i32s(name).unwrap()
    }
}

struct Case {
    name: String,
    messages: Vec<Message>,
    images: Vec<PathBuf>,
}

fn cases(model: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join(model).join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut images = Vec::new();
            let messages = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let parts = m["content"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| match p["type"].as_str().unwrap() {
                            "image" => {
                                images.push(fixtures().join(p["image"].as_str().unwrap()));
                                Part::Image
                            }
                            _ => Part::Text(p["text"].as_str().unwrap().to_string()),
                        })
                        .collect();
                    Message::new(m["role"].as_str().unwrap(), parts)
                })
                .collect();
            Case { name: c["name"].as_str().unwrap().to_string(), messages, images }
        })
        .collect()
}

/// max |got - want| / max |want| of two tensors of one length.
fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    golden::max_rel(got, want)
}

/// The reference's own pixel values, so logits are compared on identical inputs.
fn reference_pixels(r: &Reference, case: &str) -> Vec<Pixels> {
    r.0.pixels(case).unwrap()
}

#[test]
fn processor_reproduces_input_ids_and_pixel_values() {
    for model in MODELS {
        let dir = fixtures().join(model);
        let m = Qwen3VL::load(&dir).unwrap();
        let p = Processor::from_dir(&dir, &m.config).unwrap();
        let r = Reference::load(model);
        for case in cases(model) {
            let images = p.load_images(&case.images).unwrap();
            let inp = p.prepare(&case.messages, images).unwrap();
            let want: Vec<u32> = r.i32s(&format!("{}.input_ids", case.name)).iter().map(|&i| i as u32).collect();
            assert_eq!(inp.ids, want, "{model}/{}: input ids", case.name);
            if !inp.images.is_empty() {
                let got: Vec<f32> = inp.images.iter().flat_map(|p| p.data.iter().copied()).collect();
                let want = r.f32s(&format!("{}.pixel_values", case.name));
                let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                println!("{model}/{}: pixel values max abs err {err:.2e}", case.name);
                assert!(err < 2e-2, "{model}/{}: pixel values differ by {err}", case.name);
            }
        }
    }
}

fn check_model(b: &dyn Backend, model: &str, fuse: bool) {
    let dir = fixtures().join(model);
    let r = Reference::load(model);
    let mut s = Session::new(b, Qwen3VL::load(&dir).unwrap());
    s.set_compile_options(lumen::compile::Options { fuse });
    for case in cases(model) {
        let c = &case.name;
        let ids: Vec<u32> = r.i32s(&format!("{c}.input_ids")).iter().map(|&i| i as u32).collect();
        let inp = PrefillInputs { ids, images: reference_pixels(&r, c) };
        let pre = s.prefill(&inp, true, true).unwrap();
        let err = max_rel(&pre.logits.to_f32(), &r.f32s(&format!("{c}.logits")));
        let fusion = if fuse { "fused" } else { "as built" };
        let mut line = format!("{model}/{c} on {} ({fusion}): logits max rel err {err:.2e}", b.info().backend);
        assert!(err < 1e-3, "{line}");
        if let Some(e) = &pre.image_embeds {
            let ev = max_rel(&e.to_f32(), &r.f32s(&format!("{c}.image_embeds")));
            line += &format!(", image features {ev:.2e}");
            assert!(ev < 1e-3, "{line}");
            for (j, d) in pre.deepstack.iter().enumerate() {
                let ed = max_rel(&d.to_f32(), &r.f32s(&format!("{c}.deepstack.{j}")));
                assert!(ed < 1e-3, "{line}, deepstack {j} {ed:e}");
            }
        }
        drop(pre);
        let opts = GenerateOptions { max_new_tokens: 16, sampling: SamplingOptions::default(), stop: vec![] };
        let (tokens, _) = s.generate(&inp, &opts, |_| true).unwrap();
        let want: Vec<u32> = r.i32s(&format!("{c}.greedy")).iter().map(|&i| i as u32).collect();
        assert_eq!(tokens, want, "{line}: greedy tokens");
        println!("{line}, 16 greedy tokens equal");
    }
}

#[test]
fn dense_and_moe_match_transformers_on_the_cpu_oracle() {
    let cpu = CpuBackend::new();
    for model in MODELS {
        for fuse in [true, false] {
            check_model(&cpu, model, fuse);
        }
    }
}

#[test]
fn dense_and_moe_match_transformers_on_wgpu() {
    let Some(w) = common::wgpu() else { return };
    for model in MODELS {
        for fuse in [true, false] {
            check_model(w, model, fuse);
        }
    }
}

#[test]
fn end_to_end_from_image_files_gives_the_reference_greedy_tokens() {
    let cpu = CpuBackend::new();
    for model in MODELS {
        let dir = fixtures().join(model);
        let r = Reference::load(model);
        let mut s = Session::new(&cpu, Qwen3VL::load(&dir).unwrap());
        let p = Processor::from_dir(&dir, &s.model.config).unwrap();
        for case in cases(model) {
            let inp = p.prepare(&case.messages, p.load_images(&case.images).unwrap()).unwrap();
            let opts = GenerateOptions { max_new_tokens: 16, sampling: SamplingOptions::default(), stop: vec![] };
            let (tokens, _) = s.generate(&inp, &opts, |_| true).unwrap();
            let want: Vec<u32> = r.i32s(&format!("{}.greedy", case.name)).iter().map(|&i| i as u32).collect();
            assert_eq!(tokens, want, "{model}/{}", case.name);
        }
    }
}
