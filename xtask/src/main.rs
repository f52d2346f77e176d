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
//! - `bench-ops`: the fusion benchmark (`benches/fusion.rs`): fused vs as-built decoder layers
//!   (dense, MoE) and vision blocks on cpu and wgpu, kernels, peak memory and time ratios.

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
        Some("bench-ops") => cargo(&["bench", "--bench", "fusion"], &[]),
        Some("gpu-check") => gpu_check(),
        other => {
            if let Some(t) = other {
                eprintln!("xtask: unknown task `{t}`");
            }
            eprintln!("usage: cargo xtask lint | test | shaders DIR | fixtures | bench-ops | gpu-check");
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

/// The script run on the GPU machine (from the repository root).
const GPU_CHECK_SCRIPT: &str = r#"#!/usr/bin/env bash
# lumen's GPU check (made by `cargo xtask gpu-check`): run from the repository root on a GPU
# machine. Figures go to $OUT (or ./gpu-check-out). Takes about two minutes.
set -uo pipefail
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
export LUMEN_CUDA_CACHE="$PWD/.gpu-check/cuda-cache"
export XDG_RUNTIME_DIR="$(mktemp -d)"
bin=.gpu-check/lumen
img=tests/fixtures/images/chelsea.png
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    $bin devices
} 2>&1 | tee "$out/devices.txt"
# Every op against the CPU oracle, on CUDA and on Vulkan (when the machine has a loader).
timeout 240 $bin selftest --backend cuda 2>&1 | tee "$out/selftest-cuda.txt"
timeout 120 $bin selftest --backend wgpu 2>&1 | tee "$out/selftest-wgpu.txt"
# The tiny fixtures end to end: logits on cuda vs the CPU oracle, and a short generation.
for m in qwen3vl-dense qwen3vl-moe; do
    for b in cpu cuda; do
        timeout 120 $bin logits --model tests/fixtures/$m --image $img --prompt "Describe this image." \
            --backend $b --out "$out/$m-$b.npy" 2>&1 | tail -2
    done
    timeout 120 $bin run --model tests/fixtures/$m --image $img --prompt "Describe this image." \
        --backend cuda --max-tokens 32 2>&1 | tail -2
done 2>&1 | tee "$out/models.txt"
python3 - "$out" <<'PY' 2>&1 | tee -a "$out/models.txt"
import sys, struct, array
def load(path):  # float32 .npy as written by `lumen logits`, without numpy
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<H", data[8:10])
    a = array.array("f")
    a.frombytes(data[10 + hlen:])
    return a
out = sys.argv[1]
for m in ["qwen3vl-dense", "qwen3vl-moe"]:
    try:
        a, b = load(f"{out}/{m}-cpu.npy"), load(f"{out}/{m}-cuda.npy")
        diff = max(abs(x - y) for x, y in zip(a, b))
        same = max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
        print(f"{m}: cuda vs cpu logits max abs diff {diff:.3e}, argmax equal {same}")
    except Exception as e:
        print(f"{m}: no comparison ({e})")
PY
grep -h "passed, " "$out"/selftest-*.txt
"#;

/// Builds what travels to a GPU machine into `.gpu-check/` and prints the command to run.
fn gpu_check() -> bool {
    let dir = std::path::Path::new(".gpu-check");
    if !cargo(&["build", "--release", "--bin", "lumen"], &[]) {
        return false;
    }
    let nvrtc = std::env::var("LUMEN_NVRTC_DIR").unwrap_or_else(|_| "/tmp/lumen-nvrtc".into());
    let lib = format!("{nvrtc}/nvidia/cuda_nvrtc/lib");
    if !std::path::Path::new(&format!("{lib}/libnvrtc.so.12")).exists()
        && !run(
            "python3",
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                &nvrtc,
                "nvidia-cuda-nvrtc-cu12",
            ],
        )
    {
        return false;
    }
    let _ = std::fs::remove_dir_all(dir);
    if let Err(e) = std::fs::create_dir_all(dir.join("cuda-cache")) {
        eprintln!("xtask: cannot create .gpu-check: {e}");
        return false;
    }
    let copied = std::fs::copy("target/release/lumen", dir.join("lumen"))
        .and_then(|_| std::fs::write(dir.join("run.sh"), GPU_CHECK_SCRIPT));
    if let Err(e) = copied {
        eprintln!("xtask: cannot fill .gpu-check: {e}");
        return false;
    }
    // The GPU machines have CUDA 13's NVRTC only; the kernels travel as PTX for Hopper.
    let ok = Command::new(dir.join("lumen"))
        .args(["cuda-ptx", "--arch", "sm_90a"])
        .env("LUMEN_CUDA_CACHE", dir.join("cuda-cache"))
        .env("LD_LIBRARY_PATH", &lib)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("xtask: precompiling the CUDA kernels failed");
        return false;
    }
    println!("ready: .gpu-check/ (binary, PTX for sm_90a, run.sh)");
    println!("on the GPU machine (device run, carry [\".gpu-check\"], timeout_s 420): bash .gpu-check/run.sh");
    true
}
