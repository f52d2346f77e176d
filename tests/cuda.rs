//! The CUDA backend on a machine without a GPU: every `cuda/*.cu` family compiles with NVRTC
//! for Hopper and Blackwell (NVRTC from PyPI, no GPU needed; `LUMEN_REQUIRE_NVRTC=1`, set in CI,
//! makes a missing NVRTC a failure), and a missing driver is a clear error, never a panic.

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
            assert!(ptx.contains(&format!(".entry {family}")), "cuda/{family}.cu for {arch}: no entry `{family}`");
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
