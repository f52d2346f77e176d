//! FP8 and NVFP4 `quantization_config`s: `quant_method: fp8` (block-scaled E4M3, Qwen's
//! `-FP8`), compressed-tensors `float-quantized` and `nvfp4-pack-quantized`, NVIDIA ModelOpt.

use super::{compressed_tensors_format, ct_err, field, first, quant_method};
use crate::model::config::bad;
use crate::Result;
use serde_json::Value;

/// A checkpoint's FP8 (E4M3) weights `X.weight [N, K]`: which rows x inputs share a scale, and
/// the scale tensor's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fp8Weights {
    /// Rows x inputs one scale covers; `usize::MAX` for all of them (compressed-tensors' by
    /// channel: `[1, MAX]`, by tensor: `[MAX, MAX]`).
    pub block: [usize; 2],
    /// The scale tensor's suffix to `X.weight`: `_scale_inv` (`quant_method: fp8`, a multiplier
    /// despite its name), `_scale` (compressed-tensors).
    pub scale_suffix: &'static str,
}

impl Fp8Weights {
    /// The scale tensor of FP8 weight `name`.
    pub fn scale_name(&self, name: &str) -> String {
        format!("{name}{}", self.scale_suffix)
    }

    /// The scale grid in words: "blocks of 128 x 128", "one scale per row", "one scale".
    pub fn describe(&self) -> String {
        match self.block {
            [usize::MAX, usize::MAX] => "one scale per tensor".into(),
            [1, usize::MAX] => "one scale per row".into(),
            [r, k] => format!("blocks of {r} x {k}"),
        }
    }
}

/// How a checkpoint names and scales its NVFP4 weights (`X.weight [N, K]`): E2M1 codes uint8
/// `[N, K / 2]` (the even input in the low nibble), E4M3 scales `[N, K / 16]` and one f32 global
/// scale in both, `w = e2m1 * scale * global`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nvfp4Layout {
    /// NVIDIA ModelOpt: `X.weight` (the codes), `X.weight_scale`, `X.weight_scale_2` (the
    /// global), `X.input_scale`.
    ModelOpt,
    /// compressed-tensors `nvfp4-pack-quantized` (llm-compressor): `X.weight_packed`,
    /// `X.weight_scale`, `X.weight_global_scale` (the global's reciprocal: `w = e2m1 * scale /
    /// weight_global_scale`), `X.input_global_scale`.
    CompressedTensors,
}

impl Nvfp4Layout {
    /// The checkpoint tensors of weight `name` (`X.weight`): codes, scales, global scale and
    /// input scale.
    pub fn parts(self, name: &str) -> [String; 4] {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        match self {
            Nvfp4Layout::ModelOpt => {
                [name.to_string(), format!("{name}_scale"), format!("{name}_scale_2"), format!("{module}.input_scale")]
            }
            Nvfp4Layout::CompressedTensors => [
                format!("{name}_packed"),
                format!("{name}_scale"),
                format!("{name}_global_scale"),
                format!("{module}.input_global_scale"),
            ],
        }
    }

    /// The weight (`X.weight`) a codes tensor belongs to.
    pub fn weight_of(self, codes: &str) -> Option<&str> {
        match self {
            Nvfp4Layout::ModelOpt => Some(codes),
            Nvfp4Layout::CompressedTensors => codes.strip_suffix("_packed"),
        }
    }

    /// The global scale `w = e2m1 * scale * global` takes, from the stored one.
    pub fn global(self, stored: f32) -> f32 {
        match self {
            Nvfp4Layout::ModelOpt => stored,
            // The reciprocal in f32 differs from dividing by the stored value by at most an ulp.
            Nvfp4Layout::CompressedTensors => 1.0 / stored,
        }
    }
}

/// The FP8 weights a `quantization_config` declares (None: another method): `quant_method: fp8`
/// (e4m3 in blocks, `weight_scale_inv`) or compressed-tensors `float-quantized`.
pub(crate) fn fp8(q: &Value) -> Result<Option<Fp8Weights>> {
    match quant_method(q) {
        Some("fp8") => fp8_block(q).map(|block| Some(Fp8Weights { block, scale_suffix: "_scale_inv" })),
        Some("compressed-tensors") if compressed_tensors_format(q).any(|f| f == "float-quantized") => {
            compressed_tensors_fp8(q).map(Some)
        }
        _ => Ok(None),
    }
}

/// The FP8 block size of a `quant_method: fp8` config.
fn fp8_block(q: &Value) -> Result<[usize; 2]> {
    if let Some(fmt) = q.get("fmt").and_then(|f| f.as_str()).filter(|f| *f != "e4m3") {
        return Err(bad(format!("quantization_config: fp8 format `{fmt}` is not supported (e4m3 is)")));
    }
    let block: Vec<usize> = q
        .get("weight_block_size")
        .and_then(|b| serde_json::from_value(b.clone()).ok())
        .ok_or_else(|| bad("quantization_config: fp8 without a weight_block_size [rows, inputs] is not supported"))?;
    match block[..] {
        [r, k] if r > 0 && k > 0 => Ok([r, k]),
        _ => Err(bad(format!("quantization_config: weight_block_size {block:?} must be two positive sizes"))),
    }
}

/// compressed-tensors FP8 (`float-quantized`, llm-compressor's FP8 / FP8_DYNAMIC / FP8_BLOCK
/// schemes): one weight scheme for every config group, E4M3 (`type: float`, 8 bits, symmetric)
/// by channel, block or tensor. FP8 activations (dynamic or static) are run in the model's dtype
/// instead (static input scales are read, not applied).
fn compressed_tensors_fp8(q: &Value) -> Result<Fp8Weights> {
    let mut block = None;
    for (id, group, w) in ct_groups(q, "float-quantized")? {
        let fp8 = |v: &Value| field(v, "type").as_str() == Some("float") && field(v, "num_bits").as_u64() == Some(8);
        if !fp8(w) || field(w, "symmetric").as_bool() == Some(false) {
            return Err(ct_err(format!(
                "config group `{id}`: weights of type {} with {} bits{}: float-quantized is read as symmetric FP8 \
                 (float, 8 bits)",
                field(w, "type"),
                field(w, "num_bits"),
                if field(w, "symmetric").as_bool() == Some(false) { ", asymmetric" } else { "" }
            )));
        }
        let this = match field(w, "strategy").as_str() {
            Some("channel") => [1, usize::MAX],
            Some("tensor") => [usize::MAX, usize::MAX],
            Some("block") => match serde_json::from_value::<Vec<usize>>(field(w, "block_structure")).as_deref() {
                Ok(&[r, k]) if r > 0 && k > 0 => [r, k],
                _ => {
                    return Err(ct_err(format!(
                        "config group `{id}`: block strategy without a block_structure [rows, inputs]"
                    )))
                }
            },
            other => {
                return Err(ct_err(format!(
                    "config group `{id}`: FP8 weights by `{}` are not supported (channel, block and tensor are)",
                    other.unwrap_or("(no strategy)")
                )))
            }
        };
        if block.is_some_and(|b| b != this) {
            return Err(ct_err("config groups with different FP8 weight strategies are not supported".into()));
        }
        block = Some(this);
        ct_activations(id, group, "FP8", fp8)?;
    }
    let block = block.ok_or_else(|| ct_err("no config groups".into()))?;
    Ok(Fp8Weights { block, scale_suffix: "_scale" })
}

/// The NVFP4 weights a `quantization_config` declares (None: another method): ModelOpt's, or
/// compressed-tensors' `nvfp4-pack-quantized`.
pub(crate) fn nvfp4(q: &Value) -> Result<Option<Nvfp4Layout>> {
    match quant_method(q) {
        Some("modelopt") => modelopt_nvfp4(q).map(Some),
        Some("compressed-tensors") if compressed_tensors_format(q).any(|f| f == "nvfp4-pack-quantized") => {
            compressed_tensors_nvfp4(q).map(Some)
        }
        _ => Ok(None),
    }
}

/// compressed-tensors NVFP4 (`nvfp4-pack-quantized`, llm-compressor's NVFP4 and NVFP4A16
/// schemes): every config group's weights E2M1 (`type: float`, 4 bits) in groups of 16 with a
/// global scale (`strategy: tensor_group`). Activations quantized to NVFP4 (the W4A4 scheme)
/// are run in the model's dtype instead: their scales are read, not applied.
fn compressed_tensors_nvfp4(q: &Value) -> Result<Nvfp4Layout> {
    for (id, group, w) in ct_groups(q, "nvfp4-pack-quantized")? {
        let scheme = |v: &Value| {
            (field(v, "type").as_str() == Some("float") && field(v, "num_bits").as_u64() == Some(4))
                .then(|| field(v, "group_size").as_u64())
                .flatten()
        };
        match (scheme(w), field(w, "strategy").as_str()) {
            (Some(16), Some("tensor_group")) => {}
            _ => {
                return Err(ct_err(format!(
                    "config group `{id}`: weights of type {} with {} bits in groups of {} by {}: lumen reads NVFP4 \
                     (float, 4 bits, groups of 16, tensor_group)",
                    field(w, "type"),
                    field(w, "num_bits"),
                    field(w, "group_size"),
                    field(w, "strategy")
                )))
            }
        }
        ct_activations(id, group, "NVFP4", |a| scheme(a).is_some())?;
    }
    Ok(Nvfp4Layout::CompressedTensors)
}

/// The config groups of a compressed-tensors config in `format` (another format beside it is
/// an error): each group's id, the group and its weights scheme.
fn ct_groups<'a>(q: &'a Value, format: &str) -> Result<Vec<(&'a str, &'a Value, &'a Value)>> {
    if let Some(f) = compressed_tensors_format(q).find(|f| *f != format) {
        return Err(ct_err(format!("format `{f}` beside {format} is not supported (one format is)")));
    }
    let groups = q.get("config_groups").and_then(|g| g.as_object()).filter(|g| !g.is_empty());
    let groups = groups.ok_or_else(|| ct_err("no config_groups".into()))?;
    groups
        .iter()
        .map(|(id, group)| match group.get("weights") {
            Some(w) => Ok((id.as_str(), group, w)),
            None => Err(ct_err(format!("config group `{id}` has no weights scheme"))),
        })
        .collect()
}

/// A config group's activations: none, or quantized as `ours` accepts (`kind`; run in the
/// model's dtype instead, which is logged); any other scheme is an error.
fn ct_activations(id: &str, group: &Value, kind: &str, ours: impl Fn(&Value) -> bool) -> Result<()> {
    match group.get("input_activations").filter(|a| !a.is_null()) {
        None => Ok(()),
        Some(a) if ours(a) => {
            log::info!("{kind} activations (config group `{id}`) run in the model's dtype: input scales not applied");
            Ok(())
        }
        Some(a) => Err(ct_err(format!(
            "config group `{id}`: activations of type {} with {} bits are not supported ({kind} or none)",
            field(a, "type"),
            field(a, "num_bits")
        ))),
    }
}

/// Whether a ModelOpt `quantization_config` (or hf_quant_config.json's `quantization`) is the
/// NVFP4 weights lumen reads: `quant_algo` NVFP4 (or W4A16_NVFP4) with groups of 16. Its
/// activation and KV-cache scales are not applied (weights only; activations and the KV cache
/// stay in the model's dtype).
pub(crate) fn modelopt_nvfp4(q: &Value) -> Result<Nvfp4Layout> {
    let err = |m: String| bad(format!("quantization_config (modelopt): {m}"));
    let algo = first(q, &["quant_algo"]).and_then(|a| a.as_str()).unwrap_or("(none)");
    if !matches!(algo, "NVFP4" | "W4A16_NVFP4") {
        return Err(err(format!("quant_algo `{algo}` is not supported (NVFP4 is)")));
    }
    let group = first(q, &["group_size"])
        .or_else(|| q.pointer("/config_groups/group_0/weights/group_size"))
        .and_then(|g| g.as_u64())
        .unwrap_or(16);
    if group != 16 {
        return Err(err(format!("NVFP4 in groups of {group} is not supported (16 is)")));
    }
    Ok(Nvfp4Layout::ModelOpt)
}
