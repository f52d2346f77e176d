//! Pre-quantized packed integer checkpoints (`config::IntLayout`): compressed-tensors
//! `pack-quantized` (llm-compressor's GPTQ / AWQ / round-to-nearest W4A16 and W8A16 models),
//! GPTQ and AutoAWQ GEMM. Each quantized linear weight `W [N, K]` of the text decoder, and each
//! MoE expert's matrix (stored one per expert, gathered into the layer's two stacks), loads into
//! lumen's layout (codes `[N, K / per_word]` packed along the inputs, one scale word per row and
//! group) as it is uploaded, every value kept exactly:
//! - compressed-tensors, symmetric: an int4 weight's words are q4 codes as they are; an int8
//!   weight's become q8's two's-complement codes by flipping each byte's top bit; scales f16;
//! - compressed-tensors with zero points, GPTQ and AWQ: q4z, unsigned codes and per group the
//!   f16 scale with its zero point (`(code - zero) * scale`); GPTQ's and AWQ's `[K, N]`-oriented
//!   tensors are transposed, AWQ's interleaved outputs put back in order, GPTQ v1's zero points
//!   (stored less one) restored;
//! - GPTQ int8, symmetric: q8, its `[K / 4, N]` words transposed and each byte's top bit
//!   flipped, every zero point checked to be 128.
//!
//! Scales load as f16 when that is exact (else the load stops, naming the tensor). Activation
//! orders (a `g_idx` that is not `k / G`) are refused. An expert stack's group is the
//! checkpoint's (by channel: the gcd of both stacks' inputs, each row's scale repeated over its
//! groups), one for both stacks as `Op::QMoe` takes it.

use super::{quantize::Quantization, Qwen3VL};
use crate::backend::{Backend, BufferId};
use crate::graph::DType;
use crate::model::config::{IntLayout, PackedInts};
use crate::quant::{q4z_word, QFormat};
use crate::tensor::{decode, encode};
use crate::{Error, Result};
use half::f16;
use std::collections::HashSet;

/// AWQ's order of outputs in a word: nibble `i` holds output `8c + AWQ_ORDER[i]`.
const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The checkpoint tensors of a packed weight.
struct Parts {
    codes: String,
    scales: String,
    zeros: String,
    /// compressed-tensors' `_shape`, GPTQ's `g_idx`.
    extra: String,
}

/// The tensors of weight `name` (`X.weight`) in `layout`.
fn parts_of(layout: IntLayout, name: &str) -> Parts {
    if let IntLayout::CompressedTensors { .. } = layout {
        let [codes, scales, zeros, extra] =
            ["_packed", "_scale", "_zero_point", "_shape"].map(|s| format!("{name}{s}"));
        return Parts { codes, scales, zeros, extra };
    }
    let m = name.strip_suffix(".weight").unwrap_or(name);
    let [codes, scales, zeros, extra] = ["qweight", "scales", "qzeros", "g_idx"].map(|s| format!("{m}.{s}"));
    Parts { codes, scales, zeros, extra }
}

/// The weight (`X.weight`) a packed codes tensor belongs to, in `layout`.
fn weight_of(layout: IntLayout, tensor: &str) -> Option<String> {
    match layout {
        IntLayout::CompressedTensors { .. } => tensor.strip_suffix("_packed").map(String::from),
        _ => tensor.strip_suffix(".qweight").map(|m| format!("{m}.weight")),
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Nibble `i` of a word.
fn nibble(w: u32, i: usize) -> u32 {
    (w >> (4 * i)) & 15
}

/// The shapes `[rows, cols]` the codes, scales and zero points of a `[n, k]` weight have in
/// `layout` (compressed-tensors' zero points: int32 packed along the outputs).
fn shapes(layout: IntLayout, n: usize, k: usize, pw: usize, groups: usize) -> [[usize; 2]; 3] {
    match layout {
        IntLayout::CompressedTensors { .. } => [[n, k / pw], [n, groups], [n.div_ceil(8), groups]],
        IntLayout::Gptq { .. } => [[k / pw, n], [groups, n], [groups, n / pw]],
        IntLayout::Awq => [[k, n / 8], [groups, n], [groups, n / 8]],
    }
}

impl Qwen3VL {
    /// The layout, outputs and inputs of a weight the checkpoint stores packed.
    fn packed_dims(&self, name: &str) -> Option<(PackedInts, usize, usize)> {
        let p = self.config.packed?;
        let w = self.weights.get(&parts_of(p.layout, name).codes).ok()?;
        let &[a, b] = w.shape else { return None };
        let pw = p.format().per_word();
        let (n, k) = match p.layout {
            IntLayout::CompressedTensors { .. } => (a, b * pw),
            IntLayout::Gptq { .. } => (b, a * pw),
            IntLayout::Awq => (b * 8, a),
        };
        Some((p, n, k))
    }

    /// The per-expert packed matrices of an expert stack, when the checkpoint stores them so.
    fn packed_expert_parts(&self, stack: &str) -> Option<Vec<Vec<String>>> {
        self.expert_parts(stack).filter(|p| self.packed_dims(&p[0][0]).is_some())
    }

    /// The format and group of a weight (or expert stack) the checkpoint stores packed (None
    /// otherwise).
    pub(crate) fn stored_packed(&self, name: &str) -> Option<Quantization> {
        let p = self.config.packed?;
        if let Some((_, _, k)) = self.packed_dims(name) {
            return Some(Quantization::with_group(p.format(), p.group.unwrap_or(k)));
        }
        self.packed_expert_parts(name)?;
        let m = self.config.moe()?;
        let by_channel = gcd(self.config.text.hidden_size, m.intermediate_size);
        Some(Quantization::with_group(p.format(), p.group.unwrap_or(by_channel)))
    }

    /// `(experts, N, K)` of a weight (no experts) or expert stack the checkpoint stores packed.
    pub(crate) fn packed_dims_of(&self, name: &str) -> Option<(Option<usize>, usize, usize)> {
        if let Some((_, n, k)) = self.packed_dims(name) {
            return Some((None, n, k));
        }
        let (e, n, k) = self.stored_stack_dims(name, |w| self.packed_dims(w).map(|(_, n, k)| (n, k)))?;
        Some((Some(e), n, k))
    }

    /// Checks every packed tensor: a text decoder linear weight the config implies (`specs`),
    /// with codes, scales and zero points of matching sizes. Returns the names of the tensors
    /// read.
    pub(crate) fn check_packed(&self, specs: &[(String, Vec<usize>)]) -> Result<HashSet<String>> {
        let Some(p) = self.config.packed else {
            // compressed-tensors NVFP4 codes are `_packed` too (model/qwen3_vl/nvfp4.rs).
            let nvfp4 = |n: &str| self.config.nvfp4.is_some() && self.weights.u8_shape(n).is_some();
            let looks = self.weights.names().find(|n| (n.ends_with("_packed") && !nvfp4(n)) || n.ends_with(".qweight"));
            return match looks {
                Some(n) if self.config.nvfp4.is_some() => Err(Error::Model(format!(
                    "tensor `{n}` is {:?}: compressed-tensors NVFP4 codes (`_packed`) are uint8",
                    self.weights.get(n).map(|w| w.dtype).unwrap_or(DType::U32)
                ))),
                Some(n) => Err(Error::Model(format!(
                    "tensor `{n}` looks packed but config.json has no compressed-tensors, gptq or awq \
                     quantization_config"
                ))),
                None => Ok(HashSet::new()),
            };
        };
        if let IntLayout::CompressedTensors { zero_points } = p.layout {
            let refused = |n: &str| n.ends_with("_g_idx") || (!zero_points && n.ends_with("_zero_point"));
            if let Some(z) = self.weights.names().find(|n| refused(n)) {
                return Err(Error::Model(format!(
                    "tensor `{z}`: activation orders are not supported, nor zero points in a checkpoint whose \
                     config says symmetric"
                )));
            }
        }
        let packed: Vec<String> = self.weights.names().filter_map(|n| weight_of(p.layout, n)).collect();
        let mut read = HashSet::new();
        for name in packed {
            let spec = specs.iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone());
            let shape = match spec.as_deref().and_then(|s| <[usize; 2]>::try_from(s).ok()) {
                Some(s) if self.is_text_linear(&name) => Some(s),
                _ => self.expert_of(&name).and_then(|kind| self.expert_shape(kind)),
            };
            let Some([n, k]) = shape else {
                return Err(Error::Model(format!(
                    "packed tensor `{}`: lumen reads packed weights of the text decoder's linear layers and MoE \
                     experts (not of the MoE router or the vision tower)",
                    parts_of(p.layout, &name).codes
                )));
            };
            read.extend(self.check_packed_weight(p, &name, n, k)?);
        }
        self.every_expert(&read, p.method(), |w| (parts_of(p.layout, w).codes, self.packed_dims(w).is_some()))?;
        Ok(read)
    }

    /// Checks the tensors of one packed `[n, k]` weight; returns their names.
    fn check_packed_weight(&self, p: PackedInts, name: &str, n: usize, k: usize) -> Result<Vec<String>> {
        let t = parts_of(p.layout, name);
        let format = p.format();
        let (pw, group) = (format.per_word(), p.group.unwrap_or(k));
        let groups = if group > 0 && k.is_multiple_of(group) { k / group } else { 0 };
        let [cs, ss, zs] = shapes(p.layout, n, k, pw, groups);
        if groups == 0 || !group.is_multiple_of(pw) {
            return Err(Error::Model(format!(
                "`{name}` [{n}, {k}]: {} groups of {group} inputs do not divide its {k} inputs in whole words of {pw}",
                p.method()
            )));
        }
        let cw = self.weights.get(&t.codes)?;
        let sw = self.weights.get(&t.scales)?;
        // GPTQ and AWQ pack their zero points along the outputs.
        let outs_per_word = match p.layout {
            IntLayout::CompressedTensors { .. } => 1,
            IntLayout::Gptq { .. } => pw,
            IntLayout::Awq => 8,
        };
        let fits = n.is_multiple_of(outs_per_word)
            && cw.shape == cs
            && matches!(cw.dtype, DType::I32 | DType::U32)
            && sw.shape == ss
            && sw.dtype.is_float();
        if !fits {
            return Err(Error::Model(format!(
                "`{name}` [{n}, {k}] in {} int{} with groups of {group}: expects `{}` int32 {cs:?} and `{}` {ss:?} \
                 (and outputs a multiple of {outs_per_word}), got {:?} {:?} and {:?} {:?}",
                p.method(),
                p.bits,
                t.codes,
                t.scales,
                cw.dtype,
                cw.shape,
                sw.dtype,
                sw.shape
            )));
        }
        let mut read = vec![t.codes.clone(), t.scales.clone()];
        if format == QFormat::Q4z || matches!(p.layout, IntLayout::Gptq { .. }) {
            let zw = self.weights.get(&t.zeros)?;
            if zw.shape != zs || !matches!(zw.dtype, DType::I32 | DType::U32) {
                return Err(Error::Model(format!(
                    "`{}`: expects int32 {zs:?} zero points, got {:?} {:?}",
                    t.zeros, zw.dtype, zw.shape
                )));
            }
            read.push(t.zeros.clone());
            if format == QFormat::Q8 {
                // Symmetric GPTQ int8: codes q + 128 about zero points that must all be 128.
                let zeros = self.zero_points(p, &t.zeros, n, groups)?;
                if let Some(at) = zeros.iter().position(|&z| z != 128) {
                    return Err(Error::Model(format!(
                        "`{}`: zero point {} of row {} is not 128: asymmetric int8 weights are not supported",
                        t.zeros,
                        zeros[at],
                        at / groups
                    )));
                }
            }
        }
        if let Ok(s) = self.weights.get(&t.extra) {
            let gptq = !matches!(p.layout, IntLayout::CompressedTensors { .. });
            if gptq && (s.dtype != DType::I32 || s.shape != [k]) {
                return Err(Error::Model(format!(
                    "`{}` must be int32 [{k}] (each input's group), got {:?} {:?}",
                    t.extra, s.dtype, s.shape
                )));
            }
            let v: Vec<u32> = bytemuck::pod_collect_to_vec(s.stored(&t.extra)?);
            if let IntLayout::CompressedTensors { .. } = p.layout {
                // Two u32 words per i64 value: the low words must be N and K.
                let dims: Vec<u32> = if s.dtype == DType::U32 && v.len() == 4 { vec![v[0], v[2]] } else { v };
                if dims != [n as u32, k as u32] {
                    return Err(Error::Model(format!("`{}` says {dims:?}, the config implies [{n}, {k}]", t.extra)));
                }
            } else if v.len() != k || v.iter().enumerate().any(|(i, &g)| g as usize != i / group) {
                return Err(Error::Model(format!(
                    "`{}`: an activation order (a g_idx other than input / {group}) is not supported",
                    t.extra
                )));
            }
            read.push(t.extra);
        }
        Ok(read)
    }

    /// Uploads a packed weight (or an expert stack stored per expert, gathered): its codes in
    /// lumen's layout, its scales (and zero points) as the format's scale words, exactly.
    pub(crate) fn upload_packed(
        &self,
        backend: &dyn Backend,
        name: &str,
        codes: BufferId,
        scales: BufferId,
    ) -> Result<()> {
        let q = self.stored_packed(name).ok_or_else(|| Error::Model(format!("`{name}` is not packed")))?;
        let parts = self.packed_expert_parts(name).unwrap_or_else(|| vec![vec![name.to_string()]]);
        let (mut all_codes, mut all_scales) = (Vec::new(), Vec::new());
        for part in parts.iter().flatten() {
            let (c, s) = self.packed_matrix(part, q.group)?;
            all_codes.extend(c);
            all_scales.extend(s);
        }
        backend.upload(codes, &all_codes)?;
        backend.upload(scales, &all_scales)?;
        for part in parts.iter().flatten() {
            let p = self.config.packed.map(|p| p.layout).unwrap_or(IntLayout::Awq);
            let t = parts_of(p, part);
            for name in [&t.codes, &t.scales, &t.zeros, &t.extra] {
                self.weights.release(name);
            }
        }
        Ok(())
    }

    /// One packed matrix in lumen's layout: its code words and its scales in groups of `g`
    /// inputs (a divisor of the checkpoint's group: each scale repeated over its groups), as
    /// bytes.
    fn packed_matrix(&self, name: &str, g: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        let (p, n, k) = self.packed_dims(name).ok_or_else(|| Error::Model(format!("`{name}` is not packed")))?;
        let t = parts_of(p.layout, name);
        let sw = self.weights.get(&t.scales)?;
        let values = decode(sw.dtype, sw.stored(&t.scales)?);
        if let Some(bad) = values.iter().find(|v| f16::from_f32(**v).to_f32() != **v) {
            return Err(Error::Model(format!("`{}` holds {bad:e}, which an f16 scale cannot hold exactly", t.scales)));
        }
        let raw = self.weights.get(&t.codes)?.stored(&t.codes)?;
        let group = p.group.unwrap_or(k);
        let groups = k / group;
        // compressed-tensors' scales are [N, groups], GPTQ's and AWQ's [groups, N].
        let by_row = matches!(p.layout, IntLayout::CompressedTensors { .. });
        let at = |r: usize, j: usize| {
            let c = j * g / group;
            if by_row {
                r * groups + c
            } else {
                c * n + r
            }
        };
        let spread = |r_j: usize| at(r_j / (k / g), r_j % (k / g));
        let format = p.format();
        let pw = format.per_word();
        // GPTQ's [K / P, N] words packed along the inputs: the transpose is lumen's.
        let gptq_words =
            |words: &[u32]| -> Vec<u32> { (0..n * k / pw).map(|i| words[(i % (k / pw)) * n + i / (k / pw)]).collect() };
        if format != QFormat::Q4z {
            let s: Vec<f32> = (0..n * k / g).map(|i| values[spread(i)]).collect();
            // GPTQ int8's zero points were checked to be 128 at load (`check_packed_weight`).
            let codes: Vec<u8> = match p.layout {
                IntLayout::Gptq { .. } => {
                    bytemuck::cast_slice(&gptq_words(&bytemuck::pod_collect_to_vec(raw))).to_vec()
                }
                _ => raw.to_vec(),
            };
            // q8's offset codes (q + 128) become two's complement by flipping each byte's top bit.
            let flip = if format == QFormat::Q8 { 0x80 } else { 0 };
            return Ok((codes.iter().map(|b| b ^ flip).collect(), encode(DType::F16, &s)));
        }
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(raw);
        let zeros = self.zero_points(p, &t.zeros, n, groups)?;
        let codes: Vec<u32> = match p.layout {
            IntLayout::CompressedTensors { .. } => words,
            IntLayout::Gptq { .. } => gptq_words(&words),
            IntLayout::Awq => {
                let mut w = vec![0u32; n * k / 8];
                for (i, &word) in words.iter().enumerate() {
                    let (kk, c) = (i / (n / 8), i % (n / 8));
                    for (j, &o) in AWQ_ORDER.iter().enumerate() {
                        w[(8 * c + o) * (k / 8) + kk / 8] |= nibble(word, j) << (4 * (kk % 8));
                    }
                }
                w
            }
        };
        let scale_words: Vec<u32> = (0..n * k / g)
            .map(|i| {
                let (r, j) = (i / (k / g), i % (k / g));
                q4z_word(f16::from_f32(values[spread(i)]), zeros[r * groups + j * g / group])
            })
            .collect();
        Ok((bytemuck::cast_slice(&codes).to_vec(), bytemuck::cast_slice(&scale_words).to_vec()))
    }

    /// The zero points of a `[n, k]` weight with `groups` groups per row, row-major `[n, groups]`
    /// as their unsigned values (GPTQ v1's int8 zero of 255 would read as 256: kept as 0, which
    /// the symmetric check refuses).
    fn zero_points(&self, p: PackedInts, tensor: &str, n: usize, groups: usize) -> Result<Vec<u8>> {
        let zw = self.weights.get(tensor)?;
        let raw = zw.stored(tensor)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(raw);
        let (bits, pw) = (p.bits, 32 / p.bits);
        Ok((0..n * groups)
            .map(|i| {
                let (r, g) = (i / groups, i % groups);
                let z = match p.layout {
                    // Packed along the outputs: nibble r % 8 of word [r / 8, g], offset by 8.
                    IntLayout::CompressedTensors { .. } => nibble(words[(r / 8) * groups + g], r % 8),
                    IntLayout::Gptq { legacy_zeros } => {
                        let v = (words[g * (n / pw) + r / pw] >> (bits * (r % pw))) & ((1 << bits) - 1);
                        v + legacy_zeros as u32
                    }
                    IntLayout::Awq => {
                        let j = AWQ_ORDER.iter().position(|&o| o == r % 8).unwrap_or(0);
                        nibble(words[g * (n / 8) + r / 8], j)
                    }
                };
                z as u8
            })
            .collect())
    }
}
