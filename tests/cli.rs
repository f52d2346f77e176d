//! The `lumen run`, `logits`, `graph` and `selftest` commands on the committed fixtures, and
//! their errors.

mod common;

use common::lumen;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn backends() -> Vec<&'static str> {
    if common::wgpu().is_some() {
        vec!["cpu", "wgpu"]
    } else {
        vec!["cpu"]
    }
}

#[test]
fn logits_command_writes_the_reference_last_position() {
    let image = fixtures().join("images/chelsea.png");
    let scratch = common::scratch::Scratch::new("logits");
    for model in ["qwen3vl-dense", "qwen3vl-moe"] {
        let dir = fixtures().join(model);
        let st = std::fs::read(dir.join("reference.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        let t = st.tensor("image.logits").unwrap();
        let all: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
        let vocab = t.shape()[1];
        let want = &all[all.len() - vocab..];
        for backend in backends() {
            let out = scratch.join(format!("{model}-{backend}.npy"));
            let o = lumen(&[
                "logits",
                "--model",
                dir.to_str().unwrap(),
                "--image",
                image.to_str().unwrap(),
                "--prompt",
                "Describe this image.",
                "--backend",
                backend,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let (shape, got) = lumen::io::npy::read_f32(&std::fs::read(&out).unwrap()).unwrap();
            assert_eq!(shape, vec![vocab]);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            println!("lumen logits {model} --backend {backend}: max rel err {err:.2e}");
            assert!(err < 1e-3);
        }
    }
}

#[test]
fn run_command_streams_an_answer_and_reports_speed() {
    let dir = fixtures().join("qwen3vl-dense");
    for backend in backends() {
        let o = lumen(&[
            "run",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "Write one short sentence about the sea.",
            "--max-tokens",
            "8",
            "--backend",
            backend,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("prompt 37 tokens") && err.contains("tok/s"), "{err}");
        assert!(!o.stdout.is_empty());
    }
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let dir = fixtures().join("qwen3vl-dense");
    let tmp = common::scratch::Scratch::new("bad-inputs");
    let empty = tmp.join("lumen-empty.png");
    std::fs::write(&empty, b"").unwrap();
    let corrupt = tmp.join("lumen-corrupt.png");
    let png = std::fs::read(fixtures().join("images/chelsea.png")).unwrap();
    std::fs::write(&corrupt, &png[..png.len() / 3]).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--image", empty.to_str().unwrap()], "lumen-empty"),
        (&["--image", corrupt.to_str().unwrap()], "lumen-corrupt"),
        (&["--image", "/nonexistent/x.png"], "/nonexistent/x.png"),
        (&["--max-tokens", "100000"], "context"),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["run", "--model", dir.to_str().unwrap(), "--prompt", "hi", "--backend", "cpu"];
        args.extend_from_slice(extra);
        let o = lumen(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains("error:") && err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = lumen(&["run", "--model", "/nonexistent-model", "--prompt", "hi", "--backend", "cpu"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"));
}

/// The number after `label` in a summary line ("per decoder layer 14 |").
fn field(line: &str, label: &str) -> usize {
    let rest = line.split(label).nth(1).unwrap_or_else(|| panic!("no `{label}` in {line}"));
    let tok = rest.split_whitespace().next().unwrap();
    tok.split('-').next_back().unwrap().parse().unwrap_or_else(|_| panic!("`{label}` in {line}"))
}

#[test]
fn graph_command_prints_the_compiled_plan_and_its_summary() {
    let dir = fixtures().join("qwen3vl-moe");
    let image = fixtures().join("images/chelsea.png");
    let args = |phase: &'static str, fuse: bool| {
        let mut v = vec!["graph", "--model", dir.to_str().unwrap(), "--prompt", "Describe.", "--phase", phase];
        v.extend(["--image", image.to_str().unwrap(), "--backend", "cpu"]);
        if !fuse {
            v.push("--no-fuse");
        }
        v
    };
    let out = lumen(&args("decode", true));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let summary = text.lines().last().unwrap();
    println!("{summary}");
    assert!(text.lines().any(|l| l.contains("text.layer.0") && l.contains(" moe ")), "one moe kernel per layer listed");
    assert!(summary.starts_with("decode step after") && summary.contains("fusion on"));
    let fused = field(summary, "per decoder layer");
    let out = lumen(&args("decode", false));
    let plain_summary = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
    let plain = field(&plain_summary, "per decoder layer");
    assert!(fused <= 13 && plain > 2 * fused, "fused {fused}, as built {plain}");

    let out = lumen(&args("prefill", true));
    let text = String::from_utf8(out.stdout).unwrap();
    let summary = text.lines().last().unwrap();
    println!("{summary}");
    assert!(field(summary, "per vision block") <= 13);
    assert!(summary.contains("peak activations"));
    // Listed kernels (one line each) match the count in the summary.
    assert_eq!(text.lines().count() - 1, field(summary, "fusion on:"));

    let out = lumen(&["graph", "--model", dir.to_str().unwrap(), "--prompt", "x", "--phase", "sideways"]);
    assert!(!out.status.success());
}

#[test]
fn selftest_passes_on_every_backend_here_and_cuda_is_a_clear_error_without_a_driver() {
    // Ops against the oracle, then the fixture checkpoints against transformers.
    for backend in backends() {
        let out = lumen(&["selftest", "--backend", backend]);
        let text = String::from_utf8(out.stdout).unwrap();
        let last = text.lines().last().unwrap_or_default().to_string();
        println!("selftest --backend {backend}: {last}");
        assert!(out.status.success(), "{backend}: {}\n{text}", String::from_utf8_lossy(&out.stderr));
        assert!(last.ends_with(" passed, 0 failed") && !last.starts_with("0 "), "{last}");
        assert!(text.contains("qwen3vl-moe/image logits") && text.contains("qwen3vl-dense/two_images logits"));
    }
    if !lumen::backend::cuda::driver_available() {
        let out = lumen(&["selftest", "--backend", "cuda"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no NVIDIA driver"));
    }
}

#[test]
fn synthetic_presets_run_bench_and_prompts_without_a_checkpoint() {
    for b in backends() {
        let out = lumen(&[
            "bench",
            "--synthetic",
            "tiny",
            "--layers",
            "1",
            "--prefill",
            "24",
            "--decode",
            "3",
            "--backend",
            b,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{b}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("synthetic tiny (1 layers)") && text.contains("prefill 24 tokens"), "{text}");
        assert!(text.contains("decode 3 steps"), "{text}");
    }
    // A prompt through the real tokenizer, the weights made on the device.
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qwen3-tokenizer");
    let image = fixtures().join("images/chelsea_crop_40x30.png");
    let out = lumen(&[
        "run",
        "--synthetic",
        "tiny",
        "--tokenizer",
        tok.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "Hello",
        "--max-tokens",
        "4",
        "--backend",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("decode"), "{}", String::from_utf8_lossy(&out.stderr));
    for (args, want) in [
        (vec!["bench", "--synthetic", "qwen3-vl-9b"], "unknown synthetic preset `qwen3-vl-9b`"),
        (vec!["bench", "--synthetic", "qwen3-vl-8b", "--layers", "37"], "1 to 36 decoder layers"),
        (vec!["run", "--synthetic", "tiny", "--prompt", "hi"], "--tokenizer DIR"),
        (vec!["bench", "--synthetic", "tiny", "--prefill", "0", "--backend", "cpu"], "at least one prompt token"),
    ] {
        let out = lumen(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
}
