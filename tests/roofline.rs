//! `lumen bench --roofline --image-size N`: the decode floor, the matmul rate and the vision
//! timing are printed with sane figures on cpu (and wgpu where an adapter exists); the work
//! counted per token matches the presets' published active sizes; `lumen config` prints the
//! config a synthetic preset is built from.

mod common;

use common::lumen;
use lumen::engine::roofline::{active_decoder_params, prefill_flops};
use lumen::model::synthetic::SyntheticSpec;
use std::process::Command;

/// The number right after `key` in `line` (a positive, finite one).
fn after(line: &str, key: &str) -> f64 {
    let at = line.find(key).unwrap_or_else(|| panic!("no `{key}` in {line}")) + key.len();
    let num: String = line[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let v: f64 = num.parse().unwrap_or_else(|_| panic!("no number after `{key}` in {line}"));
    assert!(v.is_finite() && v > 0.0, "`{key}` {v} in {line}");
    v
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line in {text}"))
}

#[test]
fn bench_prints_the_decode_floor_matmul_rate_and_vision_time_on_every_backend() {
    let mut backends = vec!["cpu"];
    if common::wgpu().is_some() {
        backends.push("wgpu");
    }
    for b in backends {
        let args = ["bench", "--synthetic", "tiny", "--layers", "1", "--backend", b, "--prefill", "8", "--decode", "2"];
        let extras = ["--roofline", "--roofline-mib", "4", "--image-size", "256"];
        let out = lumen(&[&args[..], &extras[..]].concat());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{b}: {}", String::from_utf8_lossy(&out.stderr));
        println!("{text}");
        let floor = line(&text, "floor: ");
        after(floor, "reads ");
        after(floor, "copy bandwidth ");
        assert!(floor.contains("(4.00 MiB copy, bytes read + written)"), "{floor}");
        let (ms, tps) = (after(floor, "-> floor "), after(floor, "ms/token ("));
        assert!((ms * tps / 1e3 - 1.0).abs() < 0.01, "floor {ms} ms/token is {tps} tok/s: {floor}");
        after(floor, "reached ");
        let mm = line(&text, "matmul: ");
        assert!(mm.contains("bf16 [8 x 128] x [256 x 128]^T"), "tiny's MLP shape at 8 tokens: {mm}");
        for key in [" at ", "tokens does ", "in ", "reached "] {
            after(mm, key);
        }
        let vision = line(&text, "vision: ");
        assert!(vision.contains("one 256x256 image, 256 patches -> 64 tokens through 2 blocks"), "{vision}");
        after(vision, "blocks: ");
    }
}

#[test]
fn roofline_flags_are_checked() {
    let base = ["bench", "--synthetic", "tiny", "--layers", "1", "--backend", "cpu", "--prefill", "2", "--decode", "1"];
    let out = lumen(&[&base[..], &["--roofline", "--roofline-mib", "0"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("must be at least 1"), "{err}");
    let out = lumen(&[&base[..], &["--roofline-mib", "4"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--roofline"), "{err}");
}

#[test]
fn active_decoder_params_match_the_published_active_sizes() {
    // Qwen3-VL-8B: all 36 layers (q, k, v, o and the SwiGLU MLP) every token.
    let m = SyntheticSpec::preset("qwen3-vl-8b").unwrap().model(0).unwrap();
    let per_layer: u64 = 2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 4096 * 12288;
    assert_eq!(active_decoder_params(&m), (36 * per_layer) as f64);
    // Qwen3-VL-30B-A3B: 3.3 B active with the embedding and LM head (2 x 0.31 B), so ~2.7 B
    // in the layers: attention, the router and 8 of 128 experts.
    let m = SyntheticSpec::preset("qwen3-vl-30b-a3b").unwrap().model(0).unwrap();
    let per_layer: u64 = 2 * 4096 * 2048 + 2 * 512 * 2048 + 128 * 2048 + 8 * 3 * 768 * 2048;
    assert_eq!(active_decoder_params(&m), (48 * per_layer) as f64);
    let (layers, t) = (48.0, 2048.0);
    let attention = layers * 32.0 * 4.0 * 128.0 * t * (t + 1.0) / 2.0;
    let want = 2.0 * (48 * per_layer) as f64 * t + attention + 2.0 * 151936.0 * 2048.0;
    assert_eq!(prefill_flops(&m, 2048), want);
}

#[test]
fn config_prints_the_synthetic_presets_config_json() {
    let out = lumen(&["config", "--synthetic", "qwen3-vl-30b-a3b", "--layers", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model_type"], "qwen3_vl_moe");
    assert_eq!(v["text_config"]["num_hidden_layers"], 3);
    assert_eq!(v["text_config"]["num_experts"], 128);
    let out = lumen(&["config", "--synthetic", "qwen3-vl-8b", "--layers", "40"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("1 to 36 decoder layers"));
}

#[test]
fn hf_baseline_script_runs_or_says_in_one_line_what_is_missing() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hf_baseline.py");
    let run = |args: &[&str]| Command::new("python3").arg(script).args(args).output();
    let Ok(out) =
        run(&["tiny", "--layers", "1", "--prefill", "4", "--decode", "1", "--lumen", env!("CARGO_BIN_EXE_lumen")])
    else {
        return println!("SKIPPED: no python3");
    };
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => assert!(text.contains("hf transformers tiny (1 layers) bf16: prefill 4 tokens"), "{text}"),
        Some(3) => {
            println!("{err}");
            assert!(err.lines().count() == 1 && err.starts_with("hf_baseline: "), "{err}");
        }
        other => panic!("status {other:?}: {text}\n{err}"),
    }
    let out = run(&["tiny", "--layers", "0"]).unwrap();
    assert_eq!(out.status.code(), Some(2), "argparse rejects --layers 0");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layers must be at least 1"));
}
