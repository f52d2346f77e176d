//! `cargo xtask gpu-check`: builds what travels to a lent GPU machine into `.gpu-check/` (the
//! release binary, the CUDA kernels as PTX for Hopper, the Vulkan loader, `run.sh`) and prints
//! the one command to run there.

use crate::{cargo, run};
use std::process::Command;

/// The script run on the GPU machine (from the repository root).
const GPU_CHECK_SCRIPT: &str = include_str!("../gpu-check.sh");

/// Builds what travels to a GPU machine into `.gpu-check/` and prints the command to run.
pub fn gpu_check() -> bool {
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
        .and_then(|_| std::fs::write(dir.join("run.sh"), GPU_CHECK_SCRIPT))
        .and_then(|_| std::fs::create_dir_all(dir.join("debs")));
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
    // The Vulkan loader, for machines without one (unpacked there by run.sh).
    let apt = "-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/lumen-apt-lists";
    let fetch = format!(
        "mkdir -p /tmp/lumen-apt-lists/partial && apt-get {apt} update -qq && cd .gpu-check/debs && apt-get {apt} download libvulkan1"
    );
    if !run("sh", &["-c", &fetch]) {
        eprintln!("xtask: could not download libvulkan1 (wgpu on the GPU machine needs a loader if it has none)");
    }
    println!("ready: .gpu-check/ (binary, PTX for sm_90a, Vulkan loader, run.sh)");
    println!("on the GPU machine (device run, carry [\".gpu-check\"], timeout_s 590): bash .gpu-check/run.sh");
    true
}
