//! `lumen serve-bench` end to end on the tiny synthetic model: the Offline and Server scenarios
//! on cpu and wgpu give a report with sane fields (not speeds), and bad input is a clear error
//! or a request that fails alone.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn tokenizer() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qwen3-tokenizer").display().to_string()
}

fn tmp(name: &str) -> common::scratch::Scratch {
    common::scratch::Scratch::new(&format!("bench-{name}"))
}

fn serve_bench(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lumen"));
    c.args(["serve-bench", "--synthetic", "tiny", "--tokenizer", &tokenizer()]).args(args);
    if !args.contains(&"--inputs") {
        c.args(["--inputs", "small"]);
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn check_percentiles(p: &Value, n: u64) {
    assert_eq!(p["n"], n, "{p}");
    let (p50, p90, p99) = (num(&p["p50"]), num(&p["p90"]), num(&p["p99"]));
    assert!(0.0 <= p50 && p50 <= p90 && p90 <= p99, "{p}");
}

#[test]
fn offline_and_server_on_cpu_and_wgpu_report_sane_figures() {
    let backends = if common::wgpu().is_some() { "cpu,wgpu" } else { "cpu" };
    let dir = tmp("ok");
    let (out, plot) = (dir.join("r.json"), dir.join("p.svg"));
    let o = serve_bench(&[
        "--backend",
        backends,
        "--samples",
        "4",
        "--max-new-tokens",
        "2",
        "--qps",
        "4",
        "--accuracy",
        "--out",
        out.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    println!("{table}");
    assert!(table.contains("samples/s") && table.contains("latency p50/p90/p99 s"), "{table}");

    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["samples"], 4);
    assert_eq!(r["max_new_tokens"], 2);
    let got: Vec<&str> = r["backends"].as_array().unwrap().iter().map(|b| b["backend"].as_str().unwrap()).collect();
    assert_eq!(got, backends.split(',').collect::<Vec<_>>());
    for b in r["backends"].as_array().unwrap() {
        let s = b["summaries"].as_array().unwrap();
        let scenarios: Vec<&str> = s.iter().map(|x| x["scenario"].as_str().unwrap()).collect();
        assert_eq!(scenarios, ["offline", "server"], "{b}");
        for x in s {
            assert_eq!(
                (x["samples"].as_u64(), x["completed"].as_u64(), x["failed"].as_u64()),
                (Some(4), Some(4), Some(0))
            );
            assert!(x["errors"].as_array().unwrap().is_empty());
            let tokens = x["output_tokens"].as_u64().unwrap();
            assert!((4..=8).contains(&tokens), "{tokens}");
            assert!(x["prompt_tokens"].as_u64().unwrap() > 4 * 400, "the system prompt alone is ~450 tokens");
            assert!(num(&x["duration_s"]) > 0.0 && num(&x["samples_per_s"]) > 0.0);
            check_percentiles(&x["latency_s"], 4);
            check_percentiles(&x["ttft_s"], 4);
            assert!(num(&x["ttft_s"]["p99"]) <= num(&x["latency_s"]["p99"]));
            let acc = &x["accuracy"];
            assert_eq!(acc["samples"], 4);
            let f1 = num(&acc["category"]["f1"]);
            assert!((0.0..=1.0).contains(&f1));
        }
        assert_eq!(s[1]["offered_qps"], 4.0);
        assert_eq!(b["load_points"].as_array().unwrap().len(), 1);
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");
}

#[test]
fn a_corrupt_image_fails_its_request_alone() {
    let dir = tmp("corrupt");
    std::fs::write(dir.join("bad.png"), b"\x89PNG\r\n\x1a\nnot an image").unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/chelsea_crop_40x30.png"),
        dir.join("ok.png"),
    )
    .unwrap();
    let line = |img: &str| {
        format!(
            r#"{{"image": "{img}", "title": "Mug", "description": "A mug.", "candidates": ["Home & Garden > Kitchen & Dining > Drinkware", "Toys & Games > Toys"], "ground_truth": "Home & Garden > Kitchen & Dining > Drinkware"}}"#
        )
    };
    let data = dir.join("s.jsonl");
    std::fs::write(&data, format!("{}\n{}\n", line("ok.png"), line("bad.png"))).unwrap();
    let out = dir.join("r.json");
    let o = serve_bench(&[
        "--backend",
        "cpu",
        "--data",
        data.to_str().unwrap(),
        "--samples",
        "2",
        "--max-new-tokens",
        "1",
        "--scenario",
        "offline",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 of 2 samples could not be prepared"), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let s = &r["backends"][0]["summaries"][0];
    assert_eq!((s["completed"].as_u64(), s["failed"].as_u64()), (Some(1), Some(1)));
    let err = s["errors"][0].as_str().unwrap();
    assert!(err.contains("s.jsonl:2") && err.contains("bad.png"), "{err}");
}

#[test]
fn bad_options_are_clear_errors() {
    for (args, want) in [
        (vec!["--qps", "0"], "--qps must be a positive"),
        (vec!["--samples", "0"], "--samples must be at least 1"),
        (vec!["--latency-bound", "0"], "--latency-bound must be a positive"),
        (vec!["--data", "/nonexistent/lumen-bench.jsonl"], "/nonexistent/lumen-bench.jsonl"),
        (vec!["--inputs", "huge"], "unknown input shape `huge`"),
        (vec!["--backend", "tpu"], "unknown backend `tpu`"),
        (vec!["--scenario", "offline", "--find-max-qps"], "--find-max-qps searches Server rates"),
    ] {
        let mut a = args.clone();
        for (flag, value) in [("--backend", "cpu"), ("--samples", "1"), ("--max-new-tokens", "1")] {
            if !args.contains(&flag) {
                a.extend([flag, value]);
            }
        }
        let o = serve_bench(&a);
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(want), "{a:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
