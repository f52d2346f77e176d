//! The Qwen3-VL graphs on a tiny random checkpoint: the KV-cache decode path agrees with a full
//! prefill, the wgpu backend agrees with the CPU oracle, and broken checkpoints are clear errors.

mod common;

use common::tiny;
use lumen::backend::cpu::CpuBackend;
use lumen::backend::Backend;
use lumen::engine::Session;
use lumen::model::qwen3_vl::{Pixels, PrefillInputs, Qwen3VL};

fn image(seed: u32) -> Pixels {
    let grid = [1, 4, 6];
    let n = 24 * 3 * 2 * 16 * 16;
    let data = (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect();
    Pixels { data, grid_thw: grid }
}

/// A prompt with an image: text, the 6 image tokens between vision start/end, text.
fn prompt_with_image() -> PrefillInputs {
    let mut ids = vec![5, 17, 288];
    ids.extend([290; 6]);
    ids.extend([289, 33, 101, 7]);
    PrefillInputs { ids, images: vec![image(1)] }
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    common::rel_err(a, b)
}

fn decode_matches_prefill(b: &dyn Backend, dir: &std::path::Path, inp: &PrefillInputs) {
    let mut s = Session::new(b, Qwen3VL::load(dir).unwrap());
    let full = s.prefill(inp, true, false).unwrap().logits;
    let v = full.desc.shape.0[1];
    let n = inp.ids.len();
    let head = PrefillInputs { ids: inp.ids[..n - 2].to_vec(), images: inp.images.clone() };
    let mut pre = s.prefill(&head, false, false).unwrap();
    let l1 = s.decode(inp.ids[n - 2], &mut pre.cache).unwrap();
    let l2 = s.decode(inp.ids[n - 1], &mut pre.cache).unwrap();
    let f = full.to_f32();
    let e1 = rel(&l1, &f[(n - 2) * v..(n - 1) * v]);
    let e2 = rel(&l2, &f[(n - 1) * v..]);
    println!("{}: decode vs prefill logits rel err {e1:.2e}, {e2:.2e}", b.info().backend);
    assert!(e1 < 1e-4 && e2 < 1e-4, "decode steps disagree with the prefill: {e1:e} {e2:e}");
    assert_eq!(pre.cache.len, n);
}

#[test]
fn decode_with_kv_cache_matches_full_prefill_dense_and_moe() {
    let cpu = CpuBackend::new();
    for (name, moe, hub) in [("dense", false, false), ("moe_hub", true, true), ("moe_5x", true, false)] {
        let dir = tiny::write(name, moe, hub, !moe);
        decode_matches_prefill(&cpu, &dir, &prompt_with_image());
        decode_matches_prefill(&cpu, &dir, &PrefillInputs { ids: vec![3, 9, 27, 81, 243, 1, 2], images: vec![] });
    }
}

#[test]
fn wgpu_prefill_and_decode_match_the_cpu_oracle() {
    let Some(w) = common::wgpu() else { return };
    let cpu = CpuBackend::new();
    for (name, moe) in [("dense_w", false), ("moe_w", true)] {
        let dir = tiny::write(name, moe, true, false);
        let inp = prompt_with_image();
        let mut a = Session::new(&cpu, Qwen3VL::load(&dir).unwrap());
        let mut b = Session::new(w, Qwen3VL::load(&dir).unwrap());
        let pa = a.prefill(&inp, true, true).unwrap();
        let pb = b.prefill(&inp, true, true).unwrap();
        let e = rel(&pb.logits.to_f32(), &pa.logits.to_f32());
        let ev = rel(&pb.image_embeds.unwrap().to_f32(), &pa.image_embeds.unwrap().to_f32());
        println!("{name}: wgpu vs cpu prefill logits {e:.2e}, image features {ev:.2e}");
        assert!(e < 1e-4 && ev < 1e-4);
        decode_matches_prefill(w, &dir, &inp);
    }
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    use lumen::model::qwen3_vl::{specs, ExpertLayout};
    use lumen::model::Config;
    let dir = tiny::write("broken", true, true, false);
    let config = Config::from_dir(&dir).unwrap();
    let good = specs(&config, "model.language_model.", "model.visual.", "lm_head.weight", ExpertLayout::Hub);

    let mut wrong = good.clone();
    let i = wrong.iter().position(|(n, _)| n.ends_with("layers.1.self_attn.k_proj.weight")).unwrap();
    wrong[i].1 = vec![16, 48];
    tiny::write_tensors(&dir.join("model.safetensors"), &wrong, 0.1);
    let e = Qwen3VL::load(&dir).err().unwrap().to_string();
    assert!(e.contains("layers.1.self_attn.k_proj.weight") && e.contains("[16, 48]") && e.contains("[32, 48]"), "{e}");

    let mut extra = good.clone();
    extra.push(("model.visual.blocks.9.norm1.weight".into(), vec![72]));
    tiny::write_tensors(&dir.join("model.safetensors"), &extra, 0.1);
    let e = Qwen3VL::load(&dir).err().unwrap().to_string();
    assert!(e.contains("unexpected tensor `model.visual.blocks.9.norm1.weight`"), "{e}");

    let missing: Vec<_> = good.iter().filter(|(n, _)| !n.ends_with("layers.2.mlp.gate.weight")).cloned().collect();
    tiny::write_tensors(&dir.join("model.safetensors"), &missing, 0.1);
    let e = Qwen3VL::load(&dir).err().unwrap().to_string();
    assert!(e.contains("missing tensor `model.language_model.layers.2.mlp.gate.weight`"), "{e}");

    // A config whose sizes disagree with the weights.
    tiny::write_tensors(&dir.join("model.safetensors"), &good, 0.1);
    let json = tiny::config_json(true, true, false).replace("\"intermediate_size\": 100", "\"intermediate_size\": 99");
    std::fs::write(dir.join("config.json"), json).unwrap();
    let e = Qwen3VL::load(&dir).err().unwrap().to_string();
    assert!(e.contains("linear_fc1.weight") && e.contains("[99, 72]"), "{e}");
}

#[test]
fn prefill_memory_plan_is_a_fraction_of_all_tensors() {
    let dir = tiny::write("memory", true, true, false);
    let m = Qwen3VL::load(&dir).unwrap();
    let pg = lumen::model::qwen3_vl::PrefillGraph::build(&m, &prompt_with_image(), true).unwrap();
    let naive: usize = pg
        .graph
        .nodes()
        .iter()
        .filter(|n| !matches!(n.op, lumen::graph::Op::Input { .. }))
        .map(|n| n.desc.bytes())
        .sum();
    let cpu = CpuBackend::new();
    let keep: Vec<_> = pg.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
    let ex = lumen::exec::Executor::keeping(&cpu, pg.graph, &keep).unwrap();
    println!("prefill activations: planned {} bytes, one buffer per tensor {naive} bytes", ex.activation_bytes());
    assert!(ex.activation_bytes() * 3 < naive);
}

#[test]
fn bad_requests_are_clear_errors() {
    let cpu = CpuBackend::new();
    let dir = tiny::write("requests", false, false, true);
    let mut s = Session::new(&cpu, Qwen3VL::load(&dir).unwrap());
    let long = PrefillInputs { ids: vec![1; 513], images: vec![] };
    assert!(s.prefill(&long, false, false).err().unwrap().to_string().contains("context"));
    let oov = PrefillInputs { ids: vec![1, 300], images: vec![] };
    assert!(s.prefill(&oov, false, false).err().unwrap().to_string().contains("vocabulary"));
    let mut missing_image = prompt_with_image();
    missing_image.images.clear();
    assert!(s.prefill(&missing_image, false, false).is_err());
    let mut short = prompt_with_image();
    short.images[0].data.pop();
    assert!(s.prefill(&short, false, false).err().unwrap().to_string().contains("image 0"));
    assert!(s.prefill(&PrefillInputs::default(), false, false).is_err());
}

/// A session keeps its compiled decode step and retypes it for the next position: the inputs
/// it sets then equal those a freshly built step has, and its logits equal a fresh step's
/// (a session whose compile options are reset before each step builds every step anew).
#[test]
fn retyped_decode_steps_equal_freshly_built_ones() {
    use lumen::compile::Options;
    use lumen::model::qwen3_vl::DecodeGraph;
    let cpu = CpuBackend::new();
    let wgpu = common::wgpu();
    for (name, moe, hub) in [("retyped_dense", false, false), ("retyped_moe_hub", true, true)] {
        let dir = tiny::write(name, moe, hub, !moe);
        let m = Qwen3VL::load(&dir).unwrap();
        for (past, delta) in [(9, 0), (40, -3)] {
            let built = DecodeGraph::build(&m, 77, past, delta).unwrap().data;
            for (n, t) in DecodeGraph::step_data(&m, 77, past, delta).unwrap() {
                let (_, want) = built.iter().find(|(b, _)| *b == n).unwrap_or_else(|| panic!("no input {n}"));
                assert_eq!(want.desc, t.desc, "{n}");
                assert_eq!(want.to_f32(), t.to_f32(), "{n} at past {past}");
            }
        }
        let backends: Vec<&dyn Backend> = match wgpu {
            Some(w) => vec![&cpu, w],
            None => vec![&cpu],
        };
        for b in backends {
            let inp = PrefillInputs { ids: vec![3, 9, 27, 81, 243], images: vec![] };
            let mut kept = Session::new(b, Qwen3VL::load(&dir).unwrap());
            let mut fresh = Session::new(b, Qwen3VL::load(&dir).unwrap());
            let mut ck = kept.prefill(&inp, false, false).unwrap().cache;
            let mut cf = fresh.prefill(&inp, false, false).unwrap().cache;
            for tok in [7, 200, 12, 99] {
                let a = kept.decode(tok, &mut ck).unwrap();
                fresh.set_compile_options(Options::default());
                let f = fresh.decode(tok, &mut cf).unwrap();
                assert_eq!(a, f, "{name} on {}: a retyped step differs from a fresh one", b.info().backend);
            }
        }
    }
}
