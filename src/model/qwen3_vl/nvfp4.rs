//! Pre-quantized NVFP4 checkpoints: NVIDIA ModelOpt's (`quant_method: modelopt`, `quant_algo:
//! NVFP4`, in config.json's `quantization_config` or in hf_quant_config.json) and
//! compressed-tensors' (`format: nvfp4-pack-quantized`, llm-compressor's NVFP4 / NVFP4A16). Each
//! quantized linear weight `X.weight [N, K]` of the text decoder is stored as
//! - its codes, uint8 `[N, K / 2]`, two E2M1 codes a byte, the even input in the low nibble
//!   (ModelOpt: `X.weight`; compressed-tensors: `X.weight_packed`);
//! - `X.weight_scale`: float8_e4m3fn `[N, K / 16]`, one scale per 16 inputs;
//! - the weight's global scale, one f32: `w = e2m1 * scale * global` (ModelOpt:
//!   `X.weight_scale_2` is the global; compressed-tensors: `X.weight_global_scale` is its
//!   reciprocal, taken as `1 / stored` in f32, within an ulp of dividing by it);
//! - the activations' scale for FP4 activations (`X.input_scale`, `X.input_global_scale`): not
//!   applied, lumen runs these weights W4A16, activations in the model's dtype;
//! - with an FP8 KV cache, each attention's `k_proj.k_scale` / `v_proj.v_scale` (or
//!   `self_attn.k_scale` / `v_scale`): not applied either, the KV cache stays in the model's dtype.
//!
//! That is lumen's nvfp4 layout byte for byte (codes little-endian in u32 words, four E4M3
//! scales a word, the global an op input), so codes and scales upload as stored. Inputs must be a
//! multiple of 64. MoE experts come one matrix per expert and are gathered into the stacks
//! `Op::QMoe` reads, with one global scale per expert and stack: an expert's gate and up
//! projections must share theirs (both exporters write them so, for fused gate-up kernels), else
//! the load stops. Not yet: the vision tower in NVFP4.

use super::{quantize::Quantization, Qwen3VL};
use crate::backend::{Backend, BufferId};
use crate::graph::DType;
use crate::model::config::Nvfp4Layout;
use crate::quant::QFormat;
use crate::tensor::decode;
use crate::{Error, Result};
use std::collections::HashSet;

impl Qwen3VL {
    /// The format and group of a weight (or expert stack) the checkpoint stores in NVFP4 (None
    /// otherwise).
    pub(crate) fn stored_nvfp4(&self, name: &str) -> Option<Quantization> {
        self.nvfp4_dims_of(name).map(|_| Quantization::with_group(QFormat::Nvfp4, 16))
    }

    /// The stored `[N, K / 2]` shape of NVFP4 weight `name`'s codes.
    fn nvfp4_codes(&self, name: &str) -> Option<&[usize]> {
        let layout = self.config.nvfp4?;
        self.weights.u8_shape(&layout.parts(name)[0])
    }

    /// The per-expert NVFP4 matrices of an expert stack, when the checkpoint stores them so.
    fn nvfp4_expert_parts(&self, stack: &str) -> Option<Vec<Vec<String>>> {
        self.expert_parts(stack).filter(|p| self.nvfp4_codes(&p[0][0]).is_some())
    }

    /// (experts, rows, inputs) of an expert stack stored per expert in NVFP4.
    pub(crate) fn nvfp4_stack_dims(&self, stack: &str) -> Option<(usize, usize, usize)> {
        // Two codes a byte.
        self.stored_stack_dims(stack, |p| self.nvfp4_codes(p).map(|s| (s[0], s[1] * 2)))
    }

    /// `(experts, N, K)` of a weight (no experts) or expert stack the checkpoint stores in NVFP4.
    pub(crate) fn nvfp4_dims_of(&self, name: &str) -> Option<(Option<usize>, usize, usize)> {
        match self.nvfp4_codes(name) {
            Some(s) => Some((None, s[0], s[1] * 2)),
            None => self.nvfp4_stack_dims(name).map(|(e, n, k)| (Some(e), n, k)),
        }
    }

    /// Checks every NVFP4 weight: a text decoder linear weight the config implies (`specs`),
    /// its codes, scales and global scale of matching sizes. Returns the tensors read besides
    /// the specs' (scales, global and input scales).
    pub(crate) fn check_nvfp4(&self, specs: &[(String, Vec<usize>)]) -> Result<HashSet<String>> {
        let packed: Vec<&str> = self.weights.names().filter(|n| self.weights.u8_shape(n).is_some()).collect();
        let Some(layout) = self.config.nvfp4 else {
            return match packed.first() {
                Some(n) => Err(Error::Model(format!(
                    "tensor `{n}` is uint8 (packed FP4?) but config.json has no NVFP4 quantization_config (modelopt \
                     or compressed-tensors nvfp4-pack-quantized)"
                ))),
                None => Ok(HashSet::new()),
            };
        };
        let mut read = HashSet::new();
        for codes in packed {
            let stored = self.weights.u8_shape(codes).unwrap_or(&[]).to_vec();
            if codes.strip_suffix("_scale").is_some_and(|w| self.nvfp4_codes(w).is_some()) {
                return Err(Error::Model(format!("`{codes}` must be float8_e4m3fn (NVFP4 scales), not uint8")));
            }
            let Some(name) = layout.weight_of(codes) else {
                return Err(Error::Model(format!(
                    "uint8 tensor `{codes}`: compressed-tensors NVFP4 codes are named `X.weight_packed`"
                )));
            };
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
            if !self.is_text_linear(name) || codes != name {
                read.insert(codes.to_string());
            }
            if stored != [n, k / 2] || !k.is_multiple_of(64) {
                return Err(Error::Model(format!(
                    "NVFP4 weight `{name}` is uint8 {stored:?}; the config's [{n}, {k}] needs [{n}, {}] with {k} inputs \
                     a multiple of 64",
                    k / 2
                )));
            }
            let [_, scale, global, input] = layout.parts(name);
            if self.weights.fp8_shape(&scale) != Some(&[n, k / 16][..]) {
                let got = match (self.weights.get(&scale), self.weights.u8_shape(&scale)) {
                    (Ok(_), Some(bytes)) => format!("uint8 {bytes:?}"),
                    (Ok(w), None) => format!("{:?} {:?}", w.dtype, self.weights.fp8_shape(&scale).unwrap_or(w.shape)),
                    (Err(_), _) => "nothing (missing)".into(),
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
        self.every_expert(&read, "NVFP4", |p| (layout.parts(p)[0].clone(), self.nvfp4_codes(p).is_some()))?;
        read.extend(self.kv_cache_scales()?);
        Ok(read)
    }

    /// The FP8 KV-cache scales of an export made with an FP8 KV cache (ModelOpt's
    /// `kv_cache_quant_algo: FP8`, compressed-tensors' `kv_cache_scheme`):
    /// `P.self_attn.{k_proj.k_scale, v_proj.v_scale}` or `P.self_attn.{k,v}_scale`, one f32
    /// each, read and not applied (the KV cache stays in the model's dtype).
    pub(crate) fn kv_cache_scales(&self) -> Result<Vec<String>> {
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
        let layout = self.config.nvfp4.unwrap_or(Nvfp4Layout::ModelOpt);
        let experts = self.nvfp4_expert_parts(name).unwrap_or_else(|| vec![vec![name.to_string()]]);
        let (mut all_codes, mut all_scales, mut globals) = (Vec::new(), Vec::new(), Vec::new());
        for expert in &experts {
            let mut shared: Option<(f32, &str)> = None;
            for part in expert {
                let [codes, scale, global_name, _] = layout.parts(part);
                let scale_bytes = self.weights.get(&scale)?.stored(&scale)?;
                if let Some(at) = scale_bytes.iter().position(|b| b & 0x7f == 0x7f) {
                    return Err(Error::Model(format!("NVFP4 scales `{scale}` hold a NaN code at byte {at}")));
                }
                let stored = decode(DType::F32, self.weights.get(&global_name)?.stored(&global_name)?)[0];
                let g = layout.global(stored);
                if !(g.is_finite() && g > 0.0) {
                    return Err(Error::Model(format!(
                        "`{global_name}` holds {stored}: an NVFP4 global scale must be positive and finite"
                    )));
                }
                match shared {
                    Some((s, first)) if s.to_bits() != g.to_bits() => {
                        return Err(Error::Model(format!(
                            "`{}` and `{global_name}` differ ({s:e} and {g:e} as global scales): an expert's gate \
                             and up projections need one NVFP4 global scale (lumen fuses them)",
                            layout.parts(first)[2]
                        )))
                    }
                    Some(_) => {}
                    None => shared = Some((g, part)),
                }
                all_codes.extend_from_slice(self.weights.get(&codes)?.stored(&codes)?);
                all_scales.extend_from_slice(scale_bytes);
            }
            globals.extend(shared.map(|s| s.0));
        }
        let global = global.ok_or_else(|| Error::Model(format!("`{name}`: no buffer for its global scale")))?;
        backend.upload(codes, &all_codes)?;
        backend.upload(scales, &all_scales)?;
        backend.upload(global, &crate::tensor::encode(DType::F32, &globals))?;
        for part in experts.iter().flatten() {
            for t in layout.parts(part) {
                self.weights.release(&t);
            }
        }
        Ok(())
    }
}
