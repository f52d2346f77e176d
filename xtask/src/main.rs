//! Project tasks: `cargo xtask <task>`.
//!
//! - `lint`: `cargo fmt --check` and `cargo clippy --all-targets -- -D warnings`.
//! - `test`: the README's test command with `LUMEN_REQUIRE_GPU_ADAPTER=1`, as CI runs it.
//! - `shaders DIR`: writes every shader family, assembled for f32 and bf16 bindings, to DIR
//!   for reading or feeding to other tools.
//! - `fixtures`: regenerates tests/fixtures (tiny Qwen3-VL models and HF transformers reference
//!   outputs) with `xtask/fixtures/make_fixtures.py`, in a Python venv from PyPI
//!   (`LUMEN_FIXTURE_VENV`, default /tmp/lumen-fixtures-venv; created on first use, ~6 GB).
//! - `gpu-check`: prepares `.gpu-check/` (the release binary, CUDA kernels precompiled for
//!   Hopper, `run.sh`) to carry to a lent GPU machine, and prints the command to run there.
//! - `bench [ARGS]`: the serving benchmark, `lumen serve-bench ARGS` on the release binary
//!   (Offline and Server scenarios, table, JSON, latency plot); no ARGS: a short tiny-model run.
//! - `bench-ops`: the fusion benchmark (`benches/fusion.rs`): fused vs as-built decoder layers
//!   (dense, MoE) and vision blocks on cpu and wgpu, kernels, peak memory and time ratios.
//! - `desktop-check [--backend B] [--out PNG]`: runs the desktop example under Xvfb with the tiny
//!   fixture, waits for its answer about an image and checks it and the window's screenshot
//!   (saved to docs/desktop.png).

mod bench;
mod desktop;
mod gpu_check;

use std::process::{exit, Command};

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> bool {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    eprintln!("$ cargo {}", args.join(" "));
    match c.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            false
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("lint") => {
            cargo(&["fmt", "--all", "--", "--check"], &[])
                && cargo(&["clippy", "--release", "--all-targets", "--", "-D", "warnings"], &[])
        }
        Some("test") => cargo(&["test", "--release", "--", "--show-output"], &[("LUMEN_REQUIRE_GPU_ADAPTER", "1")]),
        Some("shaders") => {
            let Some(dir) = args.get(1) else {
                eprintln!("usage: cargo xtask shaders DIR");
                exit(2)
            };
            cargo(&["run", "--release", "--example", "dump_shaders", "--", dir], &[])
        }
        Some("fixtures") => fixtures(),
        // Fused vs as-built graphs (decoder layers, vision block) on cpu and wgpu, as ratios.
        Some("bench") => bench::bench(&args[1..]),
        Some("bench-ops") => cargo(&["bench", "--bench", "fusion"], &[]),
        Some("gpu-check") => gpu_check::gpu_check(),
        Some("desktop-check") => desktop::desktop_check(&args[1..]),
        other => {
            if let Some(t) = other {
                eprintln!("xtask: unknown task `{t}`");
            }
            eprintln!("usage: cargo xtask lint | test | shaders DIR | fixtures | bench [ARGS] | bench-ops | gpu-check | desktop-check");
            exit(2)
        }
    };
    exit(if ok { 0 } else { 1 })
}

/// The Python packages the fixture script was run with (see tests/fixtures/README.md).
const FIXTURE_PACKAGES: &[&str] =
    &["torch==2.15.0", "torchvision==0.29.2", "transformers==5.24.0", "tokenizers", "safetensors", "pillow", "numpy"];

fn run(cmd: &str, args: &[&str]) -> bool {
    eprintln!("$ {cmd} {}", args.join(" "));
    Command::new(cmd).args(args).status().map(|s| s.success()).unwrap_or_else(|e| {
        eprintln!("xtask: cannot run {cmd}: {e}");
        false
    })
}

fn fixtures() -> bool {
    let venv = std::env::var("LUMEN_FIXTURE_VENV").unwrap_or_else(|_| "/tmp/lumen-fixtures-venv".into());
    let python = format!("{venv}/bin/python");
    if !std::path::Path::new(&python).exists() {
        if !run("python3", &["-m", "venv", &venv]) {
            return false;
        }
        let mut args = vec!["-m", "pip", "install", "-q"];
        args.extend_from_slice(FIXTURE_PACKAGES);
        if !run(&python, &args) {
            return false;
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(std::path::Path::new("."));
    let script = root.join("xtask/fixtures/make_fixtures.py");
    let out = root.join("tests/fixtures");
    run(&python, &[script.to_str().unwrap_or_default(), "--out", out.to_str().unwrap_or_default()])
}
