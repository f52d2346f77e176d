//! Pre-quantized NVIDIA ModelOpt NVFP4 checkpoints (`quant_method: modelopt`, `quant_algo:
//! NVFP4`, in config.json's `quantization_config` or in hf_quant_config.json): each quantized
//! linear weight `X.weight [N, K]` of the text decoder is stored as
//! - `X.weight`: uint8 `[N, K / 2]`, two E2M1 codes a byte, the even input in the low nibble;
//! - `X.weight_scale`: float8_e4m3fn `[N, K / 16]`, one scale per 16 inputs;
//! - `X.weight_scale_2`: f32 (a scalar), the weight's global scale: `w = e2m1 * scale * global`;
//! - `X.input_scale`: f32, the activations' scale for FP4 activations (not applied: lumen runs
//!   these weights W4A16, activations in the model's dtype);
//! - with `kv_cache_quant_algo: FP8`, each attention's `k_proj.k_scale` / `v_proj.v_scale` (not
//!   applied either: the KV cache stays in the model's dtype).
//!
//! That is lumen's nvfp4 layout byte for byte (codes little-endian in u32 words, four E4M3
//! scales a word, the global an op input), so codes and scales upload as stored. Inputs must be a
//! multiple of 64. MoE experts come one matrix per expert and are gathered into the stacks
//! `Op::QMoe` reads, with one global scale per expert and stack: an expert's gate and up
//! projections must share theirs (ModelOpt exports them so, for fused gate-up kernels), else
//! the load stops. Not yet: the vision tower in NVFP4.

use super::{quantize::Quantization, Qwen3VL};
use crate::backend::{Backend, BufferId};
use crate::graph::DType;
use crate::quant::QFormat;
use crate::tensor::decode;
use crate::{Error, Result};
use std::collections::HashSet;

/// The scales, global scale and input scale tensors of NVFP4 weight `name` (`X.weight`).
fn parts(name: &str) -> [String; 3] {
    let module = name.strip_suffix(".weight").unwrap_or(name);
    [format!("{name}_scale"), format!("{name}_scale_2"), format!("{module}.input_scale")]
}

impl Qwen3VL {
    /// The format and group of a weight (or expert stack) the checkpoint stores in NVFP4 (None
    /// otherwise).
    pub(crate) fn stored_nvfp4(&self, name: &str) -> Option<Quantization> {
        let stored = self.weights.u8_shape(name).is_some() || self.nvfp4_expert_parts(name).is_some();
        (self.config.nvfp4 && stored).then(|| Quantization::with_group(QFormat::Nvfp4, 16))
    }

    /// The per-expert NVFP4 matrices of an expert stack, when the checkpoint stores them so.
    fn nvfp4_expert_parts(&self, stack: &str) -> Option<Vec<Vec<String>>> {
        self.expert_parts(stack).filter(|p| self.weights.u8_shape(&p[0][0]).is_some())
    }

    /// (experts, rows, inputs) of an expert stack stored per expert in NVFP4.
    pub(crate) fn nvfp4_stack_dims(&self, stack: &str) -> Option<(usize, usize, usize)> {
        // Two codes a byte.
        self.stored_stack_dims(stack, |p| self.weights.u8_shape(p).map(|s| (s[0], s[1] * 2)))
    }

    /// Checks every NVFP4 weight: a text decoder linear weight the config implies (`specs`),
    /// its codes, scales and global scale of matching sizes. Returns the tensors read besides
    /// the specs' (scales, global and input scales).
    pub(crate) fn check_nvfp4(&self, specs: &[(String, Vec<usize>)]) -> Result<HashSet<String>> {
        let packed: Vec<&str> = self.weights.names().filter(|n| self.weights.u8_shape(n).is_some()).collect();
        if !self.config.nvfp4 {
            return match packed.first() {
                Some(n) => Err(Error::Model(format!(
                    "tensor `{n}` is uint8 (packed FP4?) but config.json has no modelopt NVFP4 quantization_config"
                ))),
                None => Ok(HashSet::new()),
            };
        }
        let mut read = HashSet::new();
        for name in packed {
            let stored = self.weights.u8_shape(name).unwrap_or(&[]).to_vec();
            if name.strip_suffix("_scale").is_some_and(|w| self.weights.u8_shape(w).is_some()) {
                return Err(Error::Model(format!("`{name}` must be float8_e4m3fn (NVFP4 scales), not uint8")));
            }
            let spec = specs.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
            let shape = match spec.as_deref().and_then(|s| <[usize; 2]>::try_from(s).ok()) {
                Some(s) if self.is_text_linear(name) => Some(s),
                _ => self.expert_of(name).and_then(|kind| self.expert_shape(kind)),
            };
            let Some([n, k]) = shape else {
                return Err(Error::Model(format!(
                    "NVFP4 tensor `{name}`: lumen reads NVFP4 weights of the text decoder's linear layers and MoE \
                     experts (not of the router or the vision tower)"
                )));
            };
            if !self.is_text_linear(name) {
                read.insert(name.to_string());
            }
            if stored != [n, k / 2] || !k.is_multiple_of(64) {
                return Err(Error::Model(format!(
                    "NVFP4 weight `{name}` is uint8 {stored:?}; the config's [{n}, {k}] needs [{n}, {}] with {k} inputs \
                     a multiple of 64",
                    k / 2
                )));
            }
            let [scale, global, input] = parts(name);
            if self.weights.fp8_shape(&scale) != Some(&[n, k / 16][..]) {
                let got = match self.weights.get(&scale) {
                    Ok(w) => format!("{:?} {:?}", w.dtype, self.weights.fp8_shape(&scale).unwrap_or(w.shape)),
                    Err(_) => "nothing (missing)".into(),
                };
                return Err(Error::Model(format!(
                    "`{scale}` must be float8_e4m3fn [{n}, {}] (one scale per 16 inputs), got {got}",
                    k / 16
                )));
            }
            for s in [&global, &input] {
                let Ok(w) = self.weights.get(s) else {
                    if *s == global {
                        return Err(Error::Model(format!("missing tensor `{global}` (the NVFP4 global scale)")));
                    }
                    continue;
                };
                if w.dtype != DType::F32 || w.shape.iter().product::<usize>() != 1 {
                    return Err(Error::Model(format!("`{s}` must be one f32, got {:?} {:?}", w.dtype, w.shape)));
                }
                read.insert(s.clone());
            }
            read.insert(scale);
        }
        self.every_expert(&read, "NVFP4", |p| self.weights.u8_shape(p).is_some())?;
        read.extend(self.kv_cache_scales()?);
        Ok(read)
    }

    /// The FP8 KV-cache scales of an export made with `kv_cache_quant_algo: FP8`
    /// (`P.self_attn.{k_proj.k_scale, v_proj.v_scale}`, or `self_attn.{k,v}_scale`): one f32
    /// each, read and not applied (the KV cache stays in the model's dtype).
    fn kv_cache_scales(&self) -> Result<Vec<String>> {
        let kv = [".self_attn.k_proj.k_scale", ".self_attn.v_proj.v_scale", ".self_attn.k_scale", ".self_attn.v_scale"];
        let layers = self.tname("layers.");
        let names: Vec<String> = self
            .weights
            .names()
            .filter(|n| n.starts_with(&layers) && kv.iter().any(|s| n.ends_with(s)))
            .map(String::from)
            .collect();
        for n in &names {
            let w = self.weights.get(n)?;
            if w.dtype != DType::F32 || w.shape.iter().product::<usize>() != 1 {
                return Err(Error::Model(format!(
                    "KV-cache scale `{n}` must be one f32, got {:?} {:?}",
                    w.dtype, w.shape
                )));
            }
        }
        if !names.is_empty() {
            log::info!("{} FP8 KV-cache scales not applied: the KV cache stays in the model's dtype", names.len());
        }
        Ok(names)
    }

    /// Uploads an NVFP4 weight (or an expert stack stored per expert, gathered): codes and E4M3
    /// scales as stored, the global scale (one per expert of a stack). NaN scale codes, a
    /// non-finite global and an expert whose gate and up globals differ are errors naming the
    /// tensors.
    pub(crate) fn upload_nvfp4(
        &self,
        backend: &dyn Backend,
        name: &str,
        codes: BufferId,
        scales: BufferId,
        global: Option<BufferId>,
    ) -> Result<()> {
        let experts = self.nvfp4_expert_parts(name).unwrap_or_else(|| vec![vec![name.to_string()]]);
        let (mut all_codes, mut all_scales, mut globals) = (Vec::new(), Vec::new(), Vec::new());
        for expert in &experts {
            let mut shared: Option<(f32, &str)> = None;
            for part in expert {
                let [scale, global_name, _] = parts(part);
                let scale_bytes = self.weights.get(&scale)?.stored(&scale)?;
                if let Some(at) = scale_bytes.iter().position(|b| b & 0x7f == 0x7f) {
                    return Err(Error::Model(format!("NVFP4 scales `{scale}` hold a NaN code at byte {at}")));
                }
                let g = decode(DType::F32, self.weights.get(&global_name)?.stored(&global_name)?)[0];
                if !g.is_finite() {
                    return Err(Error::Model(format!("`{global_name}` holds {g}")));
                }
                match shared {
                    Some((s, first)) if s.to_bits() != g.to_bits() => {
                        return Err(Error::Model(format!(
                            "`{first}_scale_2` is {s:e} but `{global_name}` is {g:e}: an expert's gate and up \
                             projections need one NVFP4 global scale (lumen fuses them)"
                        )))
                    }
                    Some(_) => {}
                    None => shared = Some((g, part)),
                }
                all_codes.extend_from_slice(self.weights.get(part)?.stored(part)?);
                all_scales.extend_from_slice(scale_bytes);
            }
            globals.extend(shared.map(|s| s.0));
        }
        let global = global.ok_or_else(|| Error::Model(format!("`{name}`: no buffer for its global scale")))?;
        backend.upload(codes, &all_codes)?;
        backend.upload(scales, &all_scales)?;
        backend.upload(global, &crate::tensor::encode(DType::F32, &globals))?;
        for part in experts.iter().flatten() {
            let [scale, global_name, input] = parts(part);
            for t in [part, &scale, &global_name, &input] {
                self.weights.release(t);
            }
        }
        Ok(())
    }
}
