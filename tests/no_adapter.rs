//! With no Vulkan driver at all, opening wgpu is a clear error, not a panic. Runs the check in
//! a child process so the missing driver is real (VK_ICD_FILENAMES points nowhere).

use std::process::Command;

#[test]
fn missing_driver_is_a_clear_error_and_auto_falls_back_to_cpu() {
    let exe = env!("CARGO_BIN_EXE_lumen");
    let run = |backend: &str| {
        Command::new(exe)
            .args(["select", "--backend", backend])
            .env("VK_ICD_FILENAMES", "/nonexistent.json")
            .env("WGPU_BACKEND", "vulkan")
            .output()
            .unwrap()
    };
    let out = run("wgpu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("error: backend:") && err.contains("adapter"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = run("auto");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("cpu: auto found no hardware GPU adapter"), "{text}");
}
