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
    cuda_family!("rope"),
    cuda_family!("scatter"),
    cuda_family!("topk"),
    cuda_family!("moe_route"),
    cuda_family!("moe"),
    cuda_family!("random"),
    cuda_family!("paged_attention"),
    cuda_family!("attention"),
    cuda_family!("rope_heads"),
    cuda_family!("rms_norm"),
    cuda_family!("program"),
    cuda_family!("qmatmul"),
    cuda_family!("gemv"),
    cuda_family!("moe_tc"),
    cuda_family!("qmoe"),
    cuda_family!("qmatmul_tc"),
    cuda_family!("qmatmul_f8"),
];

/// The family whose source holds kernel `entry` (entries are named like their family, but
/// for the extra ones listed here).
pub fn family_of(entry: &str) -> &str {
    match entry {
        "take_along" => "gather",
        "attention_combine" => "attention",
        e if e.starts_with("attention_tc_") => "attention",
        "moe_align" => "moe_route",
        "moe_gate_up" | "moe_down" | "moe_gate_up_vec" | "moe_down_vec" | "moe_combine" => "moe",
        "qmatmul_tiled" => "qmatmul",
        e if e.starts_with("qmatmul_tc_") => "qmatmul_tc",
        e if e.starts_with("qmatmul_f8_") => "qmatmul_f8",
        "qmoe_gate_up" | "qmoe_down" => "moe",
        e if e.starts_with("qmoe_gate_up_tc") || e.starts_with("qmoe_down_tc") => "moe_tc",
        e if e.starts_with("qmoe_") => "qmoe",
        "gemv_unstaged" => "gemv",
        e if e.starts_with("paged_attention_gqa") => "paged_attention",
        e if e.starts_with("moe_gate_up_tc") || e.starts_with("moe_down_tc") || e.ends_with("_vec16") => "moe_tc",
        e => e,
    }
}

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

fn source_key(family: &str, src: &str, arch: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (src, arch).hash(&mut h);
    format!("{family}-{arch}-{:016x}", h.finish())
}

/// PTX of `family` for `arch` (e.g. `sm_90a`), from the disk cache or compiled now. Cache files
/// are named by family, arch, source hash and NVRTC version; on a machine without NVRTC a
/// cached file of any NVRTC version is used (PTX is loaded by the driver's JIT), so kernels
/// precompiled elsewhere (`lumen cuda-ptx`) can travel to a GPU machine.
pub fn ptx(family: &str, arch: &'static str) -> Result<String> {
    let src = source(family)?;
    let stem = source_key(family, &src, arch);
    let dir = cache_dir();
    let Ok((major, minor)) = version() else {
        return match precompiled(&stem) {
            Some(p) => std::fs::read_to_string(&p).map_err(|e| Error::Io(format!("{}: {e}", p.display()))),
            None => Err(Error::Backend(format!(
                "cuda: NVRTC (libnvrtc.so.12) not found and no precompiled cuda/{family}.cu for {arch} in {}",
                dir.map(|d| d.display().to_string()).unwrap_or_else(|| "the cache (no HOME)".into())
            ))),
        };
    };
    let cached = dir.map(|d| d.join(format!("{stem}-nvrtc{major}.{minor}.ptx")));
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

/// A cached PTX file of any NVRTC version for a family's cache stem.
fn precompiled(stem: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(cache_dir()?).ok()?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(stem) && n.ends_with(".ptx")))
}

/// Whether every family can be had for `arch`: NVRTC is present, or all are precompiled.
pub fn kernels_available(arch: &'static str) -> Result<()> {
    if available() {
        return Ok(());
    }
    for (family, _) in FAMILIES {
        if precompiled(&source_key(family, &source(family)?, arch)).is_none() {
            return Err(Error::Backend(format!(
                "cuda: NVRTC (libnvrtc.so.12) not found and cuda/{family}.cu is not precompiled for {arch}"
            )));
        }
    }
    Ok(())
}

/// Compiles every family for `arch` into the cache (`LUMEN_CUDA_CACHE` or the default),
/// returning how many were written: kernels for a GPU machine without NVRTC.
pub fn precompile(arch: &'static str) -> Result<usize> {
    version()?;
    for (family, _) in FAMILIES {
        ptx(family, arch)?;
    }
    Ok(FAMILIES.len())
}

/// The architecture name NVRTC takes, for a user-given one.
pub fn arch_name(arch: &str) -> Result<&'static str> {
    const KNOWN: &[&str] = &["sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_120", "sm_120a"];
    KNOWN.iter().copied().find(|a| *a == arch).ok_or_else(|| {
        Error::Input(format!("unknown CUDA architecture `{arch}`; expected one of {}", KNOWN.join(", ")))
    })
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
