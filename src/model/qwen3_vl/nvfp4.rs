//! Pre-quantized NVIDIA ModelOpt NVFP4 checkpoints (`quant_method: modelopt`, `quant_algo:
//! NVFP4`, in config.json's `quantization_config` or in hf_quant_config.json): each quantized
//! linear weight `X.weight [N, K]` of the text decoder is stored as
//! - `X.weight`: uint8 `[N, K / 2]`, two E2M1 codes a byte, the even input in the low nibble;
//! - `X.weight_scale`: float8_e4m3fn `[N, K / 16]`, one scale per 16 inputs;
//! - `X.weight_scale_2`: f32 (a scalar), the weight's global scale: `w = e2m1 * scale * global`;
//! - `X.input_scale`: f32, the activations' scale for FP4 activations (not applied: lumen runs
//!   these weights W4A16, activations in the model's dtype).
//!
//! That is lumen's nvfp4 layout byte for byte (codes little-endian in u32 words, four E4M3
//! scales a word, the global an op input), so codes and scales upload as stored. Inputs must be a
//! multiple of 64. Not yet: MoE experts in NVFP4 (a clear error), the vision tower in NVFP4.

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
    /// The format and group of a weight the checkpoint stores in NVFP4 (None otherwise).
    pub(crate) fn stored_nvfp4(&self, name: &str) -> Option<Quantization> {
        (self.config.nvfp4 && self.weights.u8_shape(name).is_some())
            .then(|| Quantization::with_group(QFormat::Nvfp4, 16))
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
            let (true, Some([n, k])) =
                (self.is_text_linear(name), spec.as_deref().and_then(|s| <[usize; 2]>::try_from(s).ok()))
            else {
                return Err(Error::Model(format!(
                    "NVFP4 tensor `{name}`: lumen reads NVFP4 weights of the text decoder's dense linear layers (not \
                     yet of MoE experts, nor of the router or the vision tower)"
                )));
            };
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
        Ok(read)
    }

    /// Uploads an NVFP4 weight: codes and E4M3 scales as stored, the global scale. NaN scale
    /// codes and a non-finite global are errors naming the tensor.
    pub(crate) fn upload_nvfp4(
        &self,
        backend: &dyn Backend,
        name: &str,
        codes: BufferId,
        scales: BufferId,
        global: Option<BufferId>,
    ) -> Result<()> {
        let [scale, global_name, input] = parts(name);
        let s = self.weights.get(&scale)?;
        let scale_bytes = s.stored(&scale)?;
        if let Some(at) = scale_bytes.iter().position(|b| b & 0x7f == 0x7f) {
            return Err(Error::Model(format!("NVFP4 scales `{scale}` hold a NaN code at byte {at}")));
        }
        let g = self.weights.get(&global_name)?;
        let gv = decode(DType::F32, g.stored(&global_name)?);
        if let Some(bad) = gv.iter().find(|v| !v.is_finite()) {
            return Err(Error::Model(format!("`{global_name}` holds {bad}")));
        }
        let global = global.ok_or_else(|| Error::Model(format!("`{name}`: no buffer for its global scale")))?;
        backend.upload(codes, self.weights.get(name)?.stored(name)?)?;
        backend.upload(scales, scale_bytes)?;
        backend.upload(global, g.stored(&global_name)?)?;
        for t in [name, &scale, &global_name, &input] {
            self.weights.release(t);
        }
        Ok(())
    }
}
