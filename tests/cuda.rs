//! The CUDA backend on a machine without a GPU: every `cuda/*.cu` family compiles with NVRTC
//! for Hopper and Blackwell (NVRTC from PyPI, no GPU needed; `LUMEN_REQUIRE_NVRTC=1`, set in CI,
//! makes a missing NVRTC a failure), the PTX assembles with `ptxas` for those GPUs where
//! `LUMEN_PTXAS` names one (PyPI's nvidia-cuda-nvcc-cu12; CI sets it), and a missing driver is a
//! clear error, never a panic.

#[path = "common/scratch.rs"]
mod scratch;

use lumen::backend::cuda::{driver_available, nvrtc};

#[test]
fn every_cuda_family_compiles_with_nvrtc_for_hopper_and_blackwell() {
    if !nvrtc::available() {
        let required = std::env::var("LUMEN_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
        assert!(!required, "LUMEN_REQUIRE_NVRTC=1 but libnvrtc.so.12 is not on the library path");
        eprintln!("SKIPPED: NVRTC not found (pip install nvidia-cuda-nvrtc-cu12, add its lib/ to LD_LIBRARY_PATH)");
        return;
    }
    let (major, minor) = nvrtc::version().unwrap();
    for (family, _) in nvrtc::FAMILIES {
        let src = nvrtc::source(family).unwrap();
        for arch in nvrtc::CHECKED_ARCHS {
            let t0 = std::time::Instant::now();
            let ptx = nvrtc::compile(family, &src, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(ptx.contains(".entry "), "cuda/{family}.cu for {arch}: no kernel entry");
            for entry in ptx.lines().filter_map(|l| l.split(".entry ").nth(1)) {
                let name = entry.trim_end_matches('(').trim();
                assert_eq!(
                    nvrtc::family_of(name),
                    *family,
                    "entry `{name}` of cuda/{family}.cu is not found by family_of"
                );
            }
            println!(
                "cuda/{family}.cu -> {arch} PTX ({} bytes) in {:?} with NVRTC {major}.{minor}",
                ptx.len(),
                t0.elapsed()
            );
            if let Some(ptxas) = std::env::var_os("LUMEN_PTXAS").filter(|p| !p.is_empty()) {
                assemble(std::path::Path::new(&ptxas), family, arch, &ptx);
            }
        }
    }
}

#[test]
fn every_cu_file_is_a_registered_family() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/cuda");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".cu") {
            assert!(nvrtc::FAMILIES.iter().any(|(f, _)| *f == stem), "cuda/{name} is not in nvrtc::FAMILIES");
        }
    }
}

#[test]
fn without_a_driver_cuda_is_a_clear_error_and_auto_falls_back() {
    if driver_available() {
        eprintln!("SKIPPED: this machine has an NVIDIA driver");
        return;
    }
    let err = lumen::backend::select("cuda").err().expect("--backend cuda without a driver must fail");
    assert!(err.to_string().contains("no NVIDIA driver"), "{err}");
    let auto = lumen::backend::select("auto").unwrap();
    assert_ne!(auto.backend.info().backend, "cuda");
    assert!(lumen::backend::device_lines().iter().any(|l| l.starts_with("cuda") && l.contains("no NVIDIA driver")));
}

/// Assembles PTX into machine code with `ptxas -v` (what the driver does when it loads the
/// module on a GPU: inline PTX such as `mma.sync` is only checked here), printing each entry's
/// registers, shared memory and spills.
fn assemble(ptxas: &std::path::Path, family: &str, arch: &str, ptx: &str) {
    let dir = scratch::Scratch::new(&format!("ptxas-{family}-{arch}"));
    let (src, bin) = (dir.join(format!("{family}-{arch}.ptx")), dir.join(format!("{family}-{arch}.cubin")));
    std::fs::write(&src, ptx).unwrap();
    let out = std::process::Command::new(ptxas)
        .args(["-v", &format!("-arch={arch}"), "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("LUMEN_PTXAS={}: cannot run it: {e}", ptxas.display()));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ptxas rejects cuda/{family}.cu for {arch}:\n{log}");
    let mut entry = String::new();
    for line in log.lines().map(|l| l.trim_start_matches("ptxas info    : ").trim()) {
        if let Some(rest) = line.strip_prefix("Compiling entry function '") {
            entry = rest.split('\'').next().unwrap_or_default().to_string();
        } else if line.starts_with("Used ") || line.contains("spill") {
            println!("  {arch} {entry}: {line}");
        }
    }
}
