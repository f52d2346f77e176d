//! CUDA sources (`cuda/<family>.cu`, embedded at build time, each after `cuda/prelude.cuh`)
//! compiled with NVRTC for one GPU architecture, and cached on disk keyed by the source, the
//! architecture and the NVRTC version, so a device compiles each family once.

use crate::{Error, Result};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

/// The prelude every family is compiled after.
pub const PRELUDE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cuda/prelude.cuh"));

macro_rules! cuda_family {
    ($name:literal) => {
        ($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/cuda/", $name, ".cu")))
    };
}

/// Every CUDA family: (name, source).
pub static FAMILIES: &[(&str, &str)] = &[
    cuda_family!("unary"),
    cuda_family!("binary"),
    cuda_family!("copy"),
    cuda_family!("gather"),
    cuda_family!("row_ops"),
    cuda_family!("matmul"),
];

/// Architectures the sources are checked for (Hopper, Blackwell datacenter and client).
pub const CHECKED_ARCHS: &[&str] = &["sm_90", "sm_100a", "sm_120a"];

/// Whether an NVRTC library can be loaded (`libnvrtc.so.12` on LD_LIBRARY_PATH, ...).
pub fn available() -> bool {
    // SAFETY: only probes whether the shared library loads.
    std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// NVRTC's version, as (major, minor).
pub fn version() -> Result<(i32, i32)> {
    if !available() {
        return Err(Error::Backend("cuda: NVRTC (libnvrtc.so.12) not found on the library path".into()));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); the call writes two ints.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::Backend(format!("cuda: NVRTC version query failed: {r:?}")));
    }
    Ok((major, minor))
}

/// The full source of a family.
pub fn source(family: &str) -> Result<String> {
    let (_, src) = FAMILIES
        .iter()
        .find(|(n, _)| *n == family)
        .ok_or_else(|| Error::Backend(format!("cuda: no kernel family `{family}`")))?;
    Ok(format!("{PRELUDE}\n// ---- cuda/{family}.cu ----\n{src}"))
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LUMEN_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(home.join("lumen").join("cuda"))
}

/// PTX of `family` for `arch` (e.g. `sm_90`), from the disk cache or compiled now.
pub fn ptx(family: &str, arch: &'static str) -> Result<String> {
    let src = source(family)?;
    let (major, minor) = version()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&src, arch, major, minor).hash(&mut h);
    let key = format!("{family}-{arch}-nvrtc{major}.{minor}-{:016x}.ptx", h.finish());
    let cached = cache_dir().map(|d| d.join(&key));
    if let Some(p) = &cached {
        if let Ok(text) = std::fs::read_to_string(p) {
            return Ok(text);
        }
    }
    let text = compile(family, &src, arch)?;
    if let Some(p) = &cached {
        // A cache that cannot be written only costs a recompile next time.
        let _ = std::fs::create_dir_all(p.parent().unwrap_or(p)).and_then(|_| std::fs::write(p, &text));
    }
    Ok(text)
}

/// Compiles a full source for `arch`, returning PTX; errors carry NVRTC's log.
pub fn compile(family: &str, src: &str, arch: &'static str) -> Result<String> {
    version()?;
    let opts = cudarc::nvrtc::CompileOptions { arch: Some(arch), ..Default::default() };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            Error::Backend(format!("cuda: compiling cuda/{family}.cu for {arch} failed:\n{}", log.to_string_lossy()))
        }
        other => Error::Backend(format!("cuda: compiling cuda/{family}.cu for {arch}: {other:?}")),
    })?;
    Ok(ptx.to_src())
}
