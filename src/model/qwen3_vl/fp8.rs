//! Pre-quantized FP8 checkpoints (Qwen's `-FP8` releases: `quantization_config` with
//! `quant_method: fp8` and `weight_block_size: [128, 128]`): each FP8 linear weight `W [N, K]`
//! (E4M3 bytes) carries `W_scale_inv [ceil(N / bn), ceil(K / bk)]`, one multiplier per block of
//! bn rows x bk inputs. lumen keeps the codes exactly as stored and gives each row's groups of
//! inputs their block's scale (f32, exact): groups of `bk` inputs (of `K` when `K <= bk`, of
//! `gcd(K, bk)` when a last partial block would straddle a group). Activations stay in the
//! model's dtype (W8A16; the checkpoint's dynamic activation scheme is not applied).

use super::{quantize::Quantization, Qwen3VL};
use crate::backend::{Backend, BufferId};
use crate::quant::QFormat;
use crate::tensor::{decode, encode};
use crate::{Error, Result};
use std::collections::HashSet;

/// The scale tensor of an FP8 weight `name`.
pub(crate) fn scale_name(name: &str) -> String {
    format!("{name}_scale_inv")
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Inputs per scale of an FP8 weight with `k` inputs in blocks of `bk`.
fn group(k: usize, bk: usize) -> usize {
    if k <= bk {
        k
    } else {
        gcd(k, bk)
    }
}

impl Qwen3VL {
    /// The format and group of a weight stored in FP8 by the checkpoint (None otherwise).
    pub(crate) fn stored_fp8(&self, name: &str) -> Option<Quantization> {
        let shape = self.weights.fp8_shape(name)?;
        let bk = self.config.fp8_block?[1];
        Some(Quantization::with_group(QFormat::Fp8, group(*shape.last()?, bk)))
    }

    /// Checks every FP8 tensor: a text decoder linear weight the config implies (`specs`),
    /// with its scales of the block grid's shape. Returns the scale tensors' names.
    pub(crate) fn check_fp8(&self, specs: &[(String, Vec<usize>)]) -> Result<HashSet<String>> {
        let fp8: Vec<&str> = self.weights.names().filter(|n| self.weights.fp8_shape(n).is_some()).collect();
        let Some([bn, bk]) = self.config.fp8_block else {
            return match fp8.first() {
                Some(n) => Err(Error::Model(format!(
                    "tensor `{n}` is FP8 but config.json has no fp8 quantization_config (weight_block_size)"
                ))),
                None => Ok(HashSet::new()),
            };
        };
        let mut scales = HashSet::new();
        for name in fp8 {
            let shape = self.weights.fp8_shape(name).unwrap_or(&[]);
            if !self.is_text_linear(name) {
                return Err(Error::Model(format!(
                    "FP8 tensor `{name}` {shape:?}: lumen reads FP8 weights of the text decoder's dense linear \
                     layers (not yet of MoE experts, the MoE router or the vision tower)"
                )));
            }
            let spec = specs.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_slice());
            if spec != Some(shape) {
                return Err(Error::Model(format!(
                    "FP8 tensor `{name}` has shape {shape:?}, the config implies {:?}",
                    spec.unwrap_or(&[])
                )));
            }
            let (n, k) = (shape[0], shape[1]);
            let g = group(k, bk);
            if !g.is_multiple_of(QFormat::Fp8.per_word()) {
                return Err(Error::Model(format!(
                    "FP8 tensor `{name}` {shape:?}: its {k} inputs in blocks of {bk} need scale groups of {g}, \
                     not a multiple of 4"
                )));
            }
            let s = scale_name(name);
            let want = [n.div_ceil(bn), k.div_ceil(bk)];
            let got = self.weights.get(&s)?;
            if got.shape != want || !got.dtype.is_float() {
                return Err(Error::Model(format!(
                    "`{s}` is {:?} {:?}; FP8 blocks of {bn} x {bk} over `{name}` {shape:?} need a float {want:?}",
                    got.dtype, got.shape
                )));
            }
            scales.insert(s);
        }
        Ok(scales)
    }

    /// Uploads an FP8 weight: its codes as stored, its block scales spread over each row's
    /// groups as f32.
    pub(crate) fn upload_fp8(
        &self,
        backend: &dyn Backend,
        name: &str,
        codes: BufferId,
        scales: BufferId,
    ) -> Result<()> {
        let q = self.stored_fp8(name).ok_or_else(|| Error::Model(format!("`{name}` is not an FP8 weight")))?;
        let [bn, bk] = self.config.fp8_block.unwrap_or([1, 1]);
        let w = self.weights.get(name)?;
        let crate::model::weights::WeightData::Bytes(bytes) = w.data else {
            return Err(Error::Model(format!("FP8 weight `{name}` has no stored bytes")));
        };
        let (n, k) = (w.shape[0], w.shape[1] * 4);
        let s = self.weights.get(&scale_name(name))?;
        let crate::model::weights::WeightData::Bytes(sb) = s.data else {
            return Err(Error::Model(format!("FP8 scales of `{name}` have no stored bytes")));
        };
        let blocks = decode(s.dtype, sb);
        let cols = k.div_ceil(bk);
        let groups = k / q.group;
        let spread: Vec<f32> =
            (0..n * groups).map(|at| blocks[at / groups / bn * cols + at % groups * q.group / bk]).collect();
        if let Some(bad) = spread.iter().find(|v| !v.is_finite()) {
            return Err(Error::Model(format!("FP8 scales of `{name}` hold {bad}")));
        }
        if let Some(at) = bytes.iter().position(|b| b & 0x7f == 0x7f) {
            return Err(Error::Model(format!("FP8 weight `{name}` holds a NaN code at byte {at}")));
        }
        backend.upload(codes, bytes)?;
        backend.upload(scales, &encode(QFormat::Fp8.scale_dtype(), &spread))?;
        self.weights.release(name);
        self.weights.release(&scale_name(name));
        Ok(())
    }
}
