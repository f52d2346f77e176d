//! The C example (examples/c/chat.c) builds with gcc against the header and the shared
//! library, streams an answer from the tiny fixture, and checks that null and freed handles
//! are error codes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// target/<profile>, where cargo puts liblumen_capi.so beside this test's deps/ folder.
/// `cargo test` builds only the rlib that tests link, so the C libraries are built here (once:
/// cargo's lock serialises the tests that ask).
fn lib_dir() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "lumen-capi", "--lib"]).current_dir(root());
            if dir.file_name().is_some_and(|n| n == "release") {
                cargo.arg("--release");
            }
            let out = cargo.output().expect("cargo runs");
            assert!(out.status.success(), "building the C libraries failed:\n{}", String::from_utf8_lossy(&out.stderr));
            dir
        })
        .clone()
}

#[test]
fn the_c_example_streams_an_answer_and_survives_bad_handles() {
    let lib = lib_dir();
    assert!(lib.join("liblumen_capi.so").exists(), "no liblumen_capi.so in {}", lib.display());
    assert!(lib.join("liblumen_capi.a").exists(), "no liblumen_capi.a in {}", lib.display());
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lumen-chat");
    let root = root();
    let cc = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("capi/include"))
        .arg(root.join("examples/c/chat.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-llumen_capi")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("gcc runs");
    assert!(cc.status.success(), "gcc failed:\n{}", String::from_utf8_lossy(&cc.stderr));
    for backend in ["cpu", "wgpu"] {
        let out = Command::new(&exe)
            .arg(root.join("tests/fixtures/qwen3vl-dense"))
            .arg("What is in the picture?")
            .arg(root.join("tests/data/images/rocket.jpg"))
            .arg(backend)
            .env("LUMEN_LOG", "warn")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let answer = String::from_utf8_lossy(&out.stdout);
        println!("{backend}: {err}answer: {answer}");
        assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
        assert!(err.contains(&format!("{backend}:")), "{err}");
        assert!(!answer.trim().is_empty(), "no answer: {err}");
        assert!(err.contains(" pieces\n") && err.contains("freed model: not a live model handle"), "{err}");
        assert!(err.contains("null request: the request handle is null"), "{err}");
    }
}

#[test]
fn a_bad_image_is_a_clear_error_from_c() {
    let root = root();
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lumen-chat-bad");
    let cc = Command::new("gcc")
        .arg("-I")
        .arg(root.join("capi/include"))
        .arg(root.join("examples/c/chat.c"))
        .arg("-L")
        .arg(lib_dir())
        .arg("-llumen_capi")
        .arg(format!("-Wl,-rpath,{}", lib_dir().display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let out = Command::new(&exe)
        .arg(root.join("tests/fixtures/qwen3vl-dense"))
        .arg("hi")
        .arg(root.join("README.md"))
        .arg("cpu")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("generate: input: message 0, part 0: not a usable image"), "{err}");
}
