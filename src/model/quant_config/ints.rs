//! Packed integer `quantization_config`s: compressed-tensors `pack-quantized`, GPTQ, AutoAWQ
//! GEMM.

use super::{ct_err, field, first, quant_method, SUPPORTED};
use crate::model::config::bad;
use crate::quant::QFormat;
use crate::Result;
use serde_json::Value;

/// How a checkpoint lays out its packed integer weights (`W` a linear weight `[N, K]`, `G` the
/// group size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntLayout {
    /// compressed-tensors `pack-quantized`: `W_packed` int32 `[N, K * bits / 32]` (codes
    /// `q + 2^(bits - 1)` packed little-endian along the inputs), `W_scale [N, K / G]`,
    /// `W_shape`; with zero points, `W_zero_point` (int4 `z + 8` packed along the outputs, int32
    /// `[ceil(N / 8), K / G]`).
    CompressedTensors {
        /// Asymmetric weights: each group has a zero point.
        zero_points: bool,
    },
    /// GPTQ: `qweight` int32 `[K / P, N]` (packed along the inputs, P = 32 / bits codes a
    /// word), `qzeros` int32 `[K / G, N / P]` (packed along the outputs), `scales [K / G, N]`,
    /// `g_idx [K]`.
    Gptq {
        /// GPTQ's v1 format (`checkpoint_format: gptq`, the default) stores each zero point
        /// less one (a zero of 0 reads back as 16, as GPTQ's own kernels read it).
        legacy_zeros: bool,
    },
    /// AutoAWQ GEMM: `qweight` int32 `[K, N / 8]` and `qzeros` int32 `[K / G, N / 8]`, both packed
    /// along the outputs with nibble `i` holding output `8c + [0, 2, 4, 6, 1, 3, 5, 7][i]`,
    /// `scales [K / G, N]`.
    Awq,
}

/// A checkpoint's packed integer weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedInts {
    /// Bits per code: 4 or 8 (8: symmetric compressed-tensors or GPTQ only).
    pub bits: usize,
    /// Inputs per scale (None: one scale per output row).
    pub group: Option<usize>,
    /// The tensors' layout.
    pub layout: IntLayout,
}

impl PackedInts {
    /// The format the weights load as: q4 / q8 for symmetric compressed-tensors codes (their
    /// words as they are), q8 for symmetric GPTQ int8 (zero points all 128), q4z where there are
    /// zero points (GPTQ and AWQ int4 always store them).
    pub fn format(&self) -> QFormat {
        match (self.layout, self.bits) {
            (IntLayout::CompressedTensors { zero_points: false } | IntLayout::Gptq { .. }, 8) => QFormat::Q8,
            (IntLayout::CompressedTensors { zero_points: false }, _) => QFormat::Q4,
            _ => QFormat::Q4z,
        }
    }

    /// The quantization method's name in `quantization_config`.
    pub fn method(&self) -> &'static str {
        match self.layout {
            IntLayout::CompressedTensors { .. } => "compressed-tensors",
            IntLayout::Gptq { .. } => "gptq",
            IntLayout::Awq => "awq",
        }
    }
}

/// The packed integer weights a non-FP8 `quantization_config` declares.
pub(crate) fn packed_ints(q: &Value) -> Result<PackedInts> {
    match quant_method(q) {
        Some("compressed-tensors") => compressed_tensors(q),
        Some("gptq") => gptq(q),
        Some("awq") => awq(q),
        other => Err(bad(format!(
            "quantization_config: quant_method `{}` is not supported ({SUPPORTED})",
            other.unwrap_or("(none)")
        ))),
    }
}

/// A GPTQ / AWQ group size: positive, or -1 (absent: `default`) for one group per row.
fn group_size(q: &Value, keys: &[&str], default: i64, method: &str) -> Result<Option<usize>> {
    match first(q, keys).map(|v| v.as_i64()).unwrap_or(Some(default)) {
        Some(-1) => Ok(None),
        Some(g) if g > 0 => Ok(Some(g as usize)),
        _ => Err(bad(format!("quantization_config ({method}): group_size must be positive or -1"))),
    }
}

/// GPTQ int4 weights (symmetric or not) or symmetric int8 weights: v1 (`checkpoint_format:
/// gptq`) or v2 zero points, in int32 words, without activation order (`desc_act`) or
/// per-module overrides (`dynamic`).
fn gptq(q: &Value) -> Result<PackedInts> {
    let err = |m: String| bad(format!("quantization_config (gptq): {m}"));
    let bits = first(q, &["bits"]).and_then(|b| b.as_u64()).unwrap_or(0);
    if !matches!(bits, 4 | 8) {
        return Err(err(format!("{bits}-bit weights are not supported (4- and 8-bit ones are)")));
    }
    // int8 loads as q8: symmetric only (every zero point 128, checked as the weights load).
    if bits == 8 && first(q, &["sym"]).and_then(|s| s.as_bool()) == Some(false) {
        return Err(err("asymmetric 8-bit weights (sym: false) are not supported (symmetric ones are)".into()));
    }
    if first(q, &["desc_act"]).and_then(|d| d.as_bool()) == Some(true) {
        return Err(err("activation order (desc_act: true) is not supported".into()));
    }
    if first(q, &["dynamic"]).is_some_and(|d| d.as_object().is_none_or(|o| !o.is_empty())) {
        return Err(err("per-module overrides (dynamic) are not supported".into()));
    }
    if let Some(p) = first(q, &["pack_dtype"]).and_then(|p| p.as_str()).filter(|p| *p != "int32") {
        return Err(err(format!("pack_dtype `{p}` is not supported (int32 is)")));
    }
    let legacy_zeros = match first(q, &["checkpoint_format", "format"]).and_then(|f| f.as_str()) {
        None | Some("gptq") => true,
        Some("gptq_v2") => false,
        Some(other) => return Err(err(format!("checkpoint format `{other}` is not supported (gptq and gptq_v2 are)"))),
    };
    let group = group_size(q, &["group_size"], 128, "gptq")?;
    Ok(PackedInts { bits: bits as usize, group, layout: IntLayout::Gptq { legacy_zeros } })
}

/// AutoAWQ GEMM int4 weights with zero points.
fn awq(q: &Value) -> Result<PackedInts> {
    let err = |m: String| bad(format!("quantization_config (awq): {m}"));
    let bits = first(q, &["bits", "w_bit"]).and_then(|b| b.as_u64()).unwrap_or(0);
    if bits != 4 {
        return Err(err(format!("{bits}-bit weights are not supported (4-bit ones are)")));
    }
    let version = first(q, &["version"]).and_then(|v| v.as_str()).unwrap_or("gemm").to_ascii_lowercase();
    if version != "gemm" {
        return Err(err(format!("version `{version}` is not supported (gemm is)")));
    }
    if first(q, &["zero_point"]).and_then(|z| z.as_bool()) == Some(false) {
        return Err(err("weights without zero points (zero_point: false) are not supported".into()));
    }
    let group = group_size(q, &["group_size", "q_group_size"], 128, "awq")?;
    Ok(PackedInts { bits: 4, group, layout: IntLayout::Awq })
}

/// The packed integer weights a compressed-tensors `quantization_config` declares: one config
/// group of int4 (symmetric or with zero points) or symmetric int8 weights, by group or by
/// channel, weights only.
fn compressed_tensors(q: &Value) -> Result<PackedInts> {
    let format = q.get("format").and_then(|f| f.as_str()).unwrap_or("(none)");
    if format != "pack-quantized" {
        return Err(ct_err(format!("format `{format}` is not supported (pack-quantized is)")));
    }
    let groups = q.get("config_groups").and_then(|g| g.as_object()).ok_or_else(|| ct_err("no config_groups".into()))?;
    let [(_, group)] = groups.iter().collect::<Vec<_>>()[..] else {
        return Err(ct_err(format!("{} config groups; lumen reads one", groups.len())));
    };
    if group.get("input_activations").is_some_and(|a| !a.is_null()) {
        return Err(ct_err("quantized activations are not supported (weight-only schemes are)".into()));
    }
    let w = group.get("weights").ok_or_else(|| ct_err("the config group has no weights scheme".into()))?;
    let bits = field(w, "num_bits").as_u64().unwrap_or(0) as usize;
    if field(w, "type").as_str() != Some("int") || !matches!(bits, 4 | 8) {
        return Err(ct_err(format!(
            "weights of type {} with {bits} bits: lumen reads int4 and int8",
            field(w, "type")
        )));
    }
    let zero_points = field(w, "symmetric").as_bool() == Some(false);
    if zero_points && bits != 4 {
        return Err(ct_err(format!("asymmetric int{bits} weights (zero points) are not supported (int4 ones are)")));
    }
    if !matches!(field(w, "actorder"), Value::Null | Value::Bool(false)) {
        return Err(ct_err(format!("activation ordering {} is not supported", field(w, "actorder"))));
    }
    let group = match field(w, "strategy").as_str() {
        Some("channel") => None,
        Some("group") => match field(w, "group_size").as_u64() {
            Some(g) if g > 0 => Some(g as usize),
            _ => return Err(ct_err("group strategy without a positive group_size".into())),
        },
        other => return Err(ct_err(format!("strategy {other:?} is not supported (group and channel are)"))),
    };
    Ok(PackedInts { bits, group, layout: IntLayout::CompressedTensors { zero_points } })
}
