//! The `quantization_config` of a pre-quantized checkpoint: FP8 (Qwen's block-scaled `-FP8`
//! releases, compressed-tensors `float-quantized` by channel, block or tensor) and NVFP4 (NVIDIA
//! ModelOpt, compressed-tensors `nvfp4-pack-quantized`) in `float.rs`, packed integer weights
//! (compressed-tensors `pack-quantized`, GPTQ, AutoAWQ GEMM) in `ints.rs`. Anything else, or a
//! variant lumen would misread, is an error naming the field.

mod float;
mod ints;

pub(crate) use float::modelopt_nvfp4;
pub(crate) use float::{fp8, nvfp4};
pub use float::{Fp8Weights, Nvfp4Layout};
pub(crate) use ints::packed_ints;
pub use ints::{IntLayout, PackedInts};

use serde_json::Value;

const SUPPORTED: &str = "lumen loads block-scaled fp8, compressed-tensors pack-quantized int4 / int8, \
     float-quantized fp8 and nvfp4-pack-quantized, GPTQ int4 / symmetric int8, AWQ (GEMM) int4 and ModelOpt NVFP4 checkpoints, or quantizes a bf16 one as it loads with --quantize q8|q4|q4z|fp8|nvfp4";

/// The quantization method of a `quantization_config` (older ModelOpt exports name it
/// `quant_library`).
pub(super) fn quant_method(q: &Value) -> Option<&str> {
    first(q, &["quant_method", "quant_library"]).and_then(|m| m.as_str())
}

/// The formats a compressed-tensors `quantization_config` names: its own and its config
/// groups'.
fn compressed_tensors_format(q: &Value) -> impl Iterator<Item = &str> {
    let groups = q.get("config_groups").and_then(|g| g.as_object()).into_iter().flat_map(|g| g.values());
    std::iter::once(q).chain(groups).filter_map(|v| v.get("format").and_then(|f| f.as_str()))
}

/// An error in a compressed-tensors `quantization_config`.
fn ct_err(m: String) -> crate::Error {
    crate::model::config::bad(format!("quantization_config (compressed-tensors): {m}"))
}

/// Field `k` of a scheme (null when absent).
fn field(v: &Value, k: &str) -> Value {
    v.get(k).cloned().unwrap_or(Value::Null)
}

/// The first of `keys` present in `q`.
fn first<'a>(q: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| q.get(*k).filter(|v| !v.is_null()))
}
