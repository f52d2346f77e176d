//! `cargo xtask bench [ARGS]`: builds the release `lumen` binary and runs `lumen serve-bench
//! ARGS` (see `lumen serve-bench --help`). With no ARGS: a short Offline + Server run of the
//! tiny synthetic model on the best local backend, about a minute on a laptop, writing
//! target/bench/results.json and target/bench/latency.svg. ARGS without `--model` or
//! `--synthetic` use the tiny synthetic model. `--server URL` runs the same scenarios against
//! an OpenAI-compatible server (`lumen serve`, vLLM, ...) instead of a local engine.

use std::path::PathBuf;
use std::process::Command;

/// The no-argument run: 6 small samples, 8 new tokens each.
const QUICK: &[&str] = &[
    "--synthetic",
    "tiny",
    "--inputs",
    "small",
    "--samples",
    "6",
    "--max-new-tokens",
    "8",
    "--scenario",
    "both",
    "--out",
    "target/bench/results.json",
    "--plot",
    "target/bench/latency.svg",
];

pub fn bench(args: &[String]) -> bool {
    let mut args: Vec<String> =
        if args.is_empty() { QUICK.iter().map(|s| s.to_string()).collect() } else { args.to_vec() };
    // No model named: the built-in tiny one.
    if !args.iter().any(|a| a.starts_with("--model") || a.starts_with("--synthetic")) {
        args.splice(0..0, ["--synthetic".to_string(), "tiny".to_string()]);
    }
    if !crate::cargo(&["build", "--release", "--bin", "lumen"], &[]) {
        return false;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let lumen = target.join("release/lumen");
    eprintln!("$ {} serve-bench {}", lumen.display(), args.join(" "));
    let mut c = Command::new(&lumen);
    c.arg("serve-bench").args(&args).current_dir(&root);
    // wgpu's Vulkan loader wants a runtime directory; headless machines often lack one.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    match c.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot run {}: {e}", lumen.display());
            false
        }
    }
}
