//! Pre-quantized FP8 checkpoints: Qwen's `-FP8` releases (`quantization_config` with
//! `quant_method: fp8` and `weight_block_size: [128, 128]`; scales `W_scale_inv`) and
//! compressed-tensors `float-quantized` ones (llm-compressor's FP8 schemes; scales `W_scale`, by
//! channel `[N, 1]`, by block, or one for the tensor). Each FP8 linear weight `W [N, K]` (E4M3
//! bytes) carries a scale `[ceil(N / bn), ceil(K / bk)]`, one multiplier per block of bn rows x
//! bk inputs (by channel: bn = 1, bk = K; by tensor: the whole matrix). lumen keeps the codes
//! exactly as stored and gives each row's groups of inputs their block's scale (f32, exact):
//! groups of `bk` inputs (of `K` when `K <= bk`, of `gcd(K, bk)` when a last partial block would
//! straddle a group). Activations stay in the model's dtype (W8A16; the checkpoint's activation
//! scheme is not applied: static input scales `W`'s module `.input_scale` are read, not applied).
//!
//! MoE layers' experts come one matrix per expert (`P.mlp.experts.{e}.{gate,up,down}_proj.weight`
//! with their scales) and are gathered into the stacks `Op::QMoe` reads (gate_up: each expert's
//! gate rows, then its up rows), with the groups both stacks of the layer can share.

use super::{quantize::Quantization, Qwen3VL};
use crate::backend::{Backend, BufferId};
use crate::quant::QFormat;
use crate::tensor::{decode, encode};
use crate::{Error, Result};
use std::collections::HashSet;

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
    /// The format and group of a weight (or expert stack) stored in FP8 by the checkpoint.
    pub(crate) fn stored_fp8(&self, name: &str) -> Option<Quantization> {
        let bk = self.config.fp8?.block[1];
        if let Some(shape) = self.weights.fp8_shape(name) {
            return Some(Quantization::with_group(QFormat::Fp8, group(*shape.last()?, bk)));
        }
        // An expert stack: the groups of both of the layer's stacks (one op reads them).
        let layer = name.strip_suffix("gate_up_proj").or_else(|| name.strip_suffix("down_proj"))?;
        let mut g = 0;
        for stack in ["gate_up_proj", "down_proj"] {
            let parts = self.fp8_expert_parts(&format!("{layer}{stack}"))?;
            g = gcd(g, group(*self.weights.fp8_shape(&parts[0][0])?.last()?, bk));
        }
        Some(Quantization::with_group(QFormat::Fp8, g))
    }

    /// The per-expert FP8 matrices of an expert stack, when the checkpoint stores them that way.
    fn fp8_expert_parts(&self, stack: &str) -> Option<Vec<Vec<String>>> {
        self.expert_parts(stack).filter(|p| self.weights.fp8_shape(&p[0][0]).is_some())
    }

    /// (experts, rows, inputs) of an expert stack stored per expert in FP8.
    pub(crate) fn fp8_stack_dims(&self, stack: &str) -> Option<(usize, usize, usize)> {
        self.stored_stack_dims(stack, |p| self.weights.fp8_shape(p).map(|s| (s[0], s[1])))
    }

    /// Checks every FP8 tensor: a text decoder linear weight the config implies (`specs`), or one
    /// expert's matrix of an MoE layer, with its scales of the block grid's shape. Returns the
    /// tensors read besides the specs' (scales, per-expert matrices).
    pub(crate) fn check_fp8(&self, specs: &[(String, Vec<usize>)]) -> Result<HashSet<String>> {
        // NVFP4 checkpoints' E4M3 block scales are theirs (model/qwen3_vl/nvfp4.rs).
        let nvfp4_scale = |n: &str| self.config.nvfp4.is_some() && n.ends_with(".weight_scale");
        let fp8: Vec<&str> =
            self.weights.names().filter(|n| self.weights.fp8_shape(n).is_some() && !nvfp4_scale(n)).collect();
        let Some(scheme) = self.config.fp8 else {
            return match fp8.first() {
                Some(n) => Err(Error::Model(format!(
                    "tensor `{n}` is FP8 but config.json has no FP8 quantization_config (quant_method fp8 with a \
                     weight_block_size, or compressed-tensors float-quantized)"
                ))),
                None => Ok(HashSet::new()),
            };
        };
        let mut read = HashSet::new();
        for name in fp8 {
            let shape = self.weights.fp8_shape(name).unwrap_or(&[]);
            let want: Option<Vec<usize>> = if self.is_text_linear(name) {
                specs.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone())
            } else {
                match self.expert_of(name).and_then(|kind| self.expert_shape(kind)) {
                    Some(s) => Some(s.to_vec()),
                    None => {
                        return Err(Error::Model(format!(
                            "FP8 tensor `{name}` {shape:?}: lumen reads FP8 weights of the text decoder's linear \
                             layers and MoE experts (not of the MoE router or the vision tower)"
                        )))
                    }
                }
            };
            if want.as_deref() != Some(shape) {
                return Err(Error::Model(format!(
                    "FP8 tensor `{name}` has shape {shape:?}, the config implies {:?}",
                    want.unwrap_or_default()
                )));
            }
            let (n, k) = (shape[0], shape[1]);
            let g = self.stored_fp8(name).map_or(0, |q| q.group);
            if !g.is_multiple_of(QFormat::Fp8.per_word()) || g == 0 {
                return Err(Error::Model(format!(
                    "FP8 tensor `{name}` {shape:?}: its {k} inputs in {} need scale groups of {g}, not a multiple \
                     of 4",
                    scheme.describe()
                )));
            }
            let s = scheme.scale_name(name);
            let [bn, bk] = scheme.block;
            let want = [n.div_ceil(bn), k.div_ceil(bk)];
            let got = self.weights.get(&s)?;
            // One scale for the tensor may be stored as a scalar or `[1]`.
            let fits = got.shape == want || (want == [1, 1] && got.shape.iter().product::<usize>() == 1);
            if !fits || !got.dtype.is_float() {
                return Err(Error::Model(format!(
                    "`{s}` is {:?} {:?}; FP8 weights in {} over `{name}` {shape:?} need a float {want:?}",
                    got.dtype,
                    got.shape,
                    scheme.describe()
                )));
            }
            if !self.is_text_linear(name) {
                read.insert(name.to_string());
            }
            read.insert(s);
            // A static activation scheme's input scale: read, not applied.
            let input = format!("{}.input_scale", name.strip_suffix(".weight").unwrap_or(name));
            if let Ok(w) = self.weights.get(&input) {
                if !w.dtype.is_float() || w.shape.iter().product::<usize>() != 1 {
                    return Err(Error::Model(format!("`{input}` must be one float, got {:?} {:?}", w.dtype, w.shape)));
                }
                read.insert(input);
            }
        }
        self.every_expert(&read, "FP8", |p| (p.to_string(), self.weights.fp8_shape(p).is_some()))?;
        read.extend(self.kv_cache_scales()?);
        Ok(read)
    }

    /// One FP8 matrix: its codes as stored, its block scales spread over its rows' groups of
    /// `g` inputs (f32). NaN codes and non-finite scales are errors naming the tensor.
    fn fp8_matrix(&self, name: &str, g: usize) -> Result<(&[u8], Vec<f32>)> {
        let scheme = self.config.fp8.ok_or_else(|| Error::Model(format!("`{name}` is not an FP8 weight")))?;
        let [bn, bk] = scheme.block;
        let w = self.weights.get(name)?;
        let bytes = w.stored(name)?;
        let (n, k) = (w.shape[0], w.shape[1] * 4);
        let sn = scheme.scale_name(name);
        let s = self.weights.get(&sn)?;
        let blocks = decode(s.dtype, s.stored(&sn)?);
        let (cols, groups) = (k.div_ceil(bk), k / g);
        let spread: Vec<f32> =
            (0..n * groups).map(|at| blocks[at / groups / bn * cols + at % groups * g / bk]).collect();
        if let Some(bad) = spread.iter().find(|v| !v.is_finite()) {
            return Err(Error::Model(format!("FP8 scales of `{name}` hold {bad}")));
        }
        if let Some(at) = bytes.iter().position(|b| b & 0x7f == 0x7f) {
            return Err(Error::Model(format!("FP8 weight `{name}` holds a NaN code at byte {at}")));
        }
        Ok((bytes, spread))
    }

    /// Uploads an FP8 weight (or an expert stack stored per expert, gathered): codes as stored,
    /// block scales spread over each row's groups as f32.
    pub(crate) fn upload_fp8(
        &self,
        backend: &dyn Backend,
        name: &str,
        codes: BufferId,
        scales: BufferId,
    ) -> Result<()> {
        let q = self.stored_fp8(name).ok_or_else(|| Error::Model(format!("`{name}` is not an FP8 weight")))?;
        let parts = self.fp8_expert_parts(name).unwrap_or_else(|| vec![vec![name.to_string()]]);
        let (mut all_codes, mut all_scales) = (Vec::new(), Vec::new());
        for part in parts.iter().flatten() {
            let (c, s) = self.fp8_matrix(part, q.group)?;
            all_codes.extend_from_slice(c);
            all_scales.extend(s);
        }
        backend.upload(codes, &all_codes)?;
        backend.upload(scales, &encode(QFormat::Fp8.scale_dtype(), &all_scales))?;
        let scheme = self.config.fp8.ok_or_else(|| Error::Model(format!("`{name}` is not an FP8 weight")))?;
        for part in parts.iter().flatten() {
            let input = format!("{}.input_scale", part.strip_suffix(".weight").unwrap_or(part));
            for t in [part.clone(), scheme.scale_name(part), input] {
                self.weights.release(&t);
            }
        }
        Ok(())
    }
}
