//! Quantizing a model's weights as they go to the device (`--quantize q8|q4|fp8|nvfp4`): which weights
//! (the text decoder's linear layers: attention q/k/v/o, MLP gate/up/down, every MoE expert),
//! the names of their codes and scales as graph inputs, and the upload, one tensor at a time: a
//! checkpoint's bf16 weight is widened, quantized and uploaded on the host one matrix at a time
//! (an expert stack expert by expert), so host memory never holds more than one full-precision
//! matrix beside one tensor's codes; a synthetic weight's codes and scales are generated on the
//! device like its full-precision values would be.

use super::{ExpertLayout, Qwen3VL};
use crate::backend::{Backend, BufferId, Kernel};
use crate::graph::{DType, Op, TensorDesc};
use crate::model::weights::{WeightData, WeightView};
use crate::quant::{quantize, QFormat};
use crate::tensor::{decode, encode};
use crate::{Error, Result};

/// How a model's weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantization {
    /// The format.
    pub format: QFormat,
    /// Inputs per scale.
    pub group: usize,
    /// Quantize the vision tower's linear layers too (blocks' attention and MLP, the mergers).
    pub vision: bool,
}

impl Quantization {
    /// `format` with its default group size, the vision tower as stored.
    pub fn new(format: QFormat) -> Self {
        Quantization { format, group: format.default_group(), vision: false }
    }

    /// `format` in groups of `group`, the vision tower as stored.
    pub fn with_group(format: QFormat, group: usize) -> Self {
        Quantization { format, group, vision: false }
    }
}

const CODES: &str = ":codes";
const SCALES: &str = ":scales";
const GLOBAL: &str = ":global";

/// The graph input names of a quantized weight's codes and scales.
pub fn quantized_names(weight: &str) -> (String, String) {
    (format!("{weight}{CODES}"), format!("{weight}{SCALES}"))
}

/// The graph input name of an NVFP4 weight's global scales.
pub fn global_name(weight: &str) -> String {
    format!("{weight}{GLOBAL}")
}

/// The weight a codes, scales or global scales name belongs to.
fn base_of(name: &str) -> Option<&str> {
    name.strip_suffix(CODES).or_else(|| name.strip_suffix(SCALES)).or_else(|| name.strip_suffix(GLOBAL))
}

impl Qwen3VL {
    /// Quantizes the text decoder's linear weights as they are uploaded (`None`: keep every
    /// weight as stored). A checkpoint's own FP8 weights stay as they are either way; other
    /// formats would quantize them twice, which is refused.
    pub fn set_quantization(&mut self, q: Option<Quantization>) -> Result<()> {
        if let Some(q) = q {
            q.format.check_group(q.group)?;
            if self.config.fp8.is_some() && q.format != QFormat::Fp8 {
                return Err(Error::Input(format!(
                    "this checkpoint's weights are FP8 already: quantizing them to {} is not supported (use its \
                     FP8 weights as they are, or a bf16 checkpoint)",
                    q.format.name()
                )));
            }
            if self.config.nvfp4.is_some() {
                return Err(Error::Input(format!(
                    "this checkpoint's weights are NVFP4 already: --quantize {} would quantize them again (use them as \
                     they are, or a bf16 checkpoint)",
                    q.format.name()
                )));
            }
            if let Some(p) = self.config.packed {
                return Err(Error::Input(format!(
                    "this checkpoint's weights are int{} already: --quantize {} would quantize them again (use \
                     them as they are, or a bf16 checkpoint)",
                    p.bits,
                    q.format.name()
                )));
            }
        }
        self.quant = q;
        Ok(())
    }

    /// The quantization chosen with [`Self::set_quantization`].
    pub fn quantization(&self) -> Option<Quantization> {
        self.quant
    }

    /// How the weight `name` goes to the device quantized: the checkpoint's FP8, or the chosen
    /// quantization when it applies to this weight (see [`Self::is_quantized`]); None when it
    /// goes as stored.
    pub fn quant_of(&self, name: &str) -> Option<Quantization> {
        self.stored_fp8(name)
            .or_else(|| self.stored_packed(name))
            .or_else(|| self.stored_nvfp4(name))
            .or_else(|| self.quantize_at_load(name).then_some(self.quant).flatten())
    }

    /// Whether the weight `name` goes to the device quantized: stored in FP8, or quantized as it
    /// loads (see [`Self::quantize_at_load`]).
    pub fn is_quantized(&self, name: &str) -> bool {
        self.quant_of(name).is_some()
    }

    /// Whether the chosen quantization applies to `name`: a dense linear layer of the text
    /// decoder, an MoE layer's expert stack, or (with `vision`) a linear layer of the vision
    /// tower, whose input size the format can group (a multiple of the group; of 64 for NVFP4).
    fn quantize_at_load(&self, name: &str) -> bool {
        let Some(q) = self.quant else { return false };
        let fits = |name: &str, rank: usize| {
            self.weights
                .get(name)
                .is_ok_and(|w| w.shape.len() == rank && q.format.check(self.out_in(name, w.shape).2, q.group).is_ok())
        };
        if let Some(rest) = name.strip_prefix(&self.visual) {
            // The vision tower's linear layers (not the patch embedding, a convolution).
            let linear = [".attn.qkv.weight", ".attn.proj.weight", ".linear_fc1.weight", ".linear_fc2.weight"];
            return q.vision && linear.iter().any(|l| rest.ends_with(l)) && fits(name, 2);
        }
        let is_linear = self.is_text_linear(name);
        let Some(rest) = name.strip_prefix(&self.tname("layers.")) else { return false };
        let stack =
            rest.strip_suffix(".mlp.experts.gate_up_proj").or_else(|| rest.strip_suffix(".mlp.experts.down_proj"));
        match stack {
            // One fused op takes both stacks of a layer: both are quantized, or neither.
            Some(layer) => ["gate_up_proj", "down_proj"]
                .iter()
                .all(|s| fits(&self.tname(&format!("layers.{layer}.mlp.experts.{s}")), 3)),
            None => is_linear && fits(name, 2),
        }
    }

    /// Whether `name` is a dense linear weight of the text decoder (attention q/k/v/o, MLP
    /// gate/up/down; not the MoE router, not an expert stack).
    pub(crate) fn is_text_linear(&self, name: &str) -> bool {
        let linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
        name.strip_prefix(&self.tname("layers.")).is_some_and(|rest| {
            linear.iter().any(|l| rest.ends_with(&format!(".{l}.weight"))) && !rest.contains(".experts.")
        })
    }

    /// Whether the expert stack `name` stores each matrix `[in, out]` (the hub layout).
    fn stored_in_out(&self, name: &str) -> bool {
        self.expert_layout == ExpertLayout::Hub && name.contains(".experts.")
    }

    /// A weight's (stack size, rows `[out]`, inputs `[in]`) as the codes store it: `[out, in]`
    /// matrices (expert stacks in the hub layout are stored `[E, in, out]`).
    fn out_in(&self, name: &str, shape: &[usize]) -> (usize, usize, usize) {
        match *shape {
            [e, a, b] if self.stored_in_out(name) => (e, b, a),
            [e, a, b] => (e, a, b),
            [a, b] => (1, a, b),
            _ => (1, 0, 0),
        }
    }

    /// The types of a quantized weight's codes and scales (`[E, out, in / ...]` for a stack).
    pub fn quantized_descs(&self, name: &str) -> Result<(TensorDesc, TensorDesc)> {
        let q = self.quant_of(name).ok_or_else(|| Error::Model(format!("`{name}` is not quantized")))?;
        // Stored pre-quantized: codes and scales as the checkpoint's `(experts, N, K)` imply.
        let stored = self
            .packed_dims_of(name)
            .or_else(|| self.nvfp4_dims_of(name))
            .or_else(|| self.fp8_stack_dims(name).map(|(e, n, k)| (Some(e), n, k)));
        if let Some((e, n, k)) = stored {
            let (pw, g) = (q.format.per_word(), q.group * q.format.scales_per_word());
            let lead = |last: usize| e.map_or(vec![n, last], |e| vec![e, n, last]);
            return Ok((
                TensorDesc::new(DType::U32, lead(k / pw)),
                TensorDesc::new(q.format.scale_dtype(), lead(k / g)),
            ));
        }
        let w = self.weights.get(name)?;
        if let Some(shape) = self.weights.fp8_shape(name) {
            let (n, k) = (shape[0], shape[1]);
            return Ok((w.desc(), TensorDesc::new(q.format.scale_dtype(), [n, k / q.group])));
        }
        let (e, n, k) = self.out_in(name, w.shape);
        let (pw, g) = (q.format.per_word(), q.group * q.format.scales_per_word());
        let lead = if w.shape.len() == 3 { vec![e, n] } else { vec![n] };
        let shape = |last: usize| [&lead[..], &[last]].concat();
        Ok((TensorDesc::new(DType::U32, shape(k / pw)), TensorDesc::new(q.format.scale_dtype(), shape(k / g))))
    }

    /// The type of an NVFP4 weight's global scales (`F32 [E]` for a stack, `[1]` for one
    /// matrix); None for the other formats.
    pub fn global_desc(&self, name: &str) -> Result<Option<TensorDesc>> {
        if !self.quant_of(name).is_some_and(|q| q.format.has_global()) {
            return Ok(None);
        }
        let e = match self.nvfp4_dims_of(name) {
            Some((e, _, _)) => e.unwrap_or(1),
            None => {
                let w = self.weights.get(name)?;
                if w.shape.len() == 3 {
                    self.out_in(name, w.shape).0
                } else {
                    1
                }
            }
        };
        Ok(Some(TensorDesc::new(DType::F32, [e])))
    }

    /// What goes to the device: every weight by name, a quantized one as its codes and scales.
    pub fn device_weights(&self) -> Vec<String> {
        let mut all: Vec<String> = self.weight_specs().into_iter().map(|(n, _)| n).collect();
        all.push(self.lm_head_name().to_string());
        all.sort();
        all.dedup();
        all.into_iter()
            .flat_map(|n| {
                if let Some(q) = self.quant_of(&n) {
                    let (c, s) = quantized_names(&n);
                    let mut v = vec![c, s];
                    if q.format.has_global() {
                        v.push(global_name(&n));
                    }
                    v
                } else {
                    vec![n]
                }
            })
            .collect()
    }

    /// Each device weight's format (`bf16`, `f32`, `q8`, ...), bytes and name (the
    /// checkpoint's: a quantized weight's codes and scales count together).
    fn device_bytes(&self) -> Vec<(String, usize, String)> {
        let mut out = Vec::new();
        for n in self.device_weights() {
            match (base_of(&n), base_of(&n).and_then(|b| self.quant_of(b))) {
                (Some(base), Some(q)) if n.ends_with(CODES) => {
                    if let (Ok((c, s)), Ok(g)) = (self.quantized_descs(base), self.global_desc(base)) {
                        let bytes = c.bytes() + s.bytes() + g.map_or(0, |g| g.bytes());
                        out.push((q.format.name().to_string(), bytes, base.to_string()));
                    }
                }
                (Some(_), _) => {}
                _ => {
                    if let Ok(w) = self.weights.get(&n) {
                        out.push((format!("{:?}", w.dtype).to_lowercase(), w.desc().bytes(), n));
                    }
                }
            }
        }
        out
    }

    /// Bytes on the device by format, largest first.
    pub fn weight_bytes(&self) -> Vec<(String, usize)> {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for (fmt, bytes, _) in self.device_bytes() {
            *by.entry(fmt).or_default() += bytes;
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v
    }

    /// Weight bytes one decode token must read at least: every text decoder weight (of MoE
    /// experts, the routed share), the final norm and the LM head; not the vision tower, not
    /// the embedding table (one row is read) unless it is also the LM head.
    pub fn decode_bytes(&self) -> usize {
        let share = self.config.moe().map_or(1.0, |m| m.top_k as f64 / m.num_experts as f64);
        let embed = self.tname("embed_tokens.weight");
        self.device_bytes()
            .into_iter()
            .filter(|(_, _, n)| n.starts_with(&self.text) || n == self.lm_head_name())
            .filter(|(_, _, n)| n != &embed || n == self.lm_head_name())
            .map(|(_, b, n)| if n.contains(".experts.") { (b as f64 * share) as usize } else { b })
            .sum()
    }

    /// One line: weight bytes by format and the bytes a decode token reads.
    pub fn weight_summary(&self) -> String {
        let size = |b: usize| match b as f64 {
            x if x >= (1u64 << 30) as f64 => format!("{:.2} GiB", x / (1u64 << 30) as f64),
            x => format!("{:.2} MiB", x / (1u64 << 20) as f64),
        };
        let parts: Vec<String> = self.weight_bytes().iter().map(|(f, b)| format!("{} {f}", size(*b))).collect();
        format!("weights {}; a decode token reads >= {} of them", parts.join(" + "), size(self.decode_bytes()))
    }

    /// Uploads the device weight `name` (see [`Self::device_weights`]); a codes or scales name
    /// uploads both and returns them in that order.
    pub fn upload_weight(&self, backend: &dyn Backend, name: &str) -> Result<Vec<(String, BufferId)>> {
        let Some(base) = base_of(name).filter(|b| self.is_quantized(b)) else {
            let buf = self.weights.get(name)?.to_device(backend)?;
            self.weights.release(name);
            return Ok(vec![(name.to_string(), buf)]);
        };
        let q = self.quant_of(base).ok_or_else(|| Error::Model(format!("`{base}` is not quantized")))?;
        let (cd, sd) = self.quantized_descs(base)?;
        let gd = self.global_desc(base)?;
        let (cn, sn) = quantized_names(base);
        let mut bufs: Vec<(String, BufferId)> = Vec::new();
        let descs = [Some((cn, &cd)), Some((sn, &sd)), gd.as_ref().map(|g| (global_name(base), g))];
        for (n, d) in descs.into_iter().flatten() {
            match backend.alloc(d) {
                Ok(b) => bufs.push((n, b)),
                Err(e) => {
                    bufs.iter().for_each(|(_, b)| backend.free(*b));
                    return Err(e);
                }
            }
        }
        let (codes, scales) = (bufs[0].1, bufs[1].1);
        let put = if self.stored_fp8(base).is_some() {
            self.upload_fp8(backend, base, codes, scales)
        } else if self.stored_packed(base).is_some() {
            self.upload_packed(backend, base, codes, scales)
        } else if self.stored_nvfp4(base).is_some() {
            self.upload_nvfp4(backend, base, codes, scales, bufs.get(2).map(|b| b.1))
        } else {
            self.weights.get(base).and_then(|w| {
                let stack = self.out_in(base, w.shape);
                let transposed = self.stored_in_out(base);
                let global = bufs.get(2).map(|b| b.1).zip(gd.as_ref());
                fill(backend, &w, q, (stack, transposed), [(codes, &cd), (scales, &sd)], global)
            })
        };
        let put = put.map_err(|e| match e {
            Error::Input(m) => Error::Model(format!("cannot quantize `{base}` to {}: {m}", q.format.name())),
            e => e,
        });
        if let Err(e) = put {
            bufs.iter().for_each(|(_, b)| backend.free(*b));
            return Err(e);
        }
        self.weights.release(base);
        Ok(bufs)
    }
}

/// Quantizes `w` (`stack` = (matrices, rows, inputs) as the codes store them; `transposed`:
/// each matrix is stored `[in, out]`) into its codes and scales (and NVFP4's global scale per
/// matrix), one matrix at a time on the host, so only one matrix is ever held in f32 beside the
/// codes of the stack.
fn fill(
    backend: &dyn Backend,
    w: &WeightView,
    q: Quantization,
    ((e, n, k), transposed): ((usize, usize, usize), bool),
    [(codes, cd), (scales, sd)]: [(BufferId, &TensorDesc); 2],
    global: Option<(BufferId, &TensorDesc)>,
) -> Result<()> {
    match w.data {
        WeightData::Bytes(b) => {
            let per = n * k * w.dtype.size();
            let (mut all_codes, mut all_scales) = (Vec::with_capacity(cd.bytes()), Vec::with_capacity(sd.bytes()));
            let mut globals = Vec::with_capacity(e);
            for m in 0..e {
                let mut values = decode(w.dtype, &b[m * per..(m + 1) * per]);
                if transposed {
                    values = (0..n * k).map(|at| values[(at % k) * n + at / k]).collect();
                }
                let qw = quantize(&values, n, k, q.format, q.group)?;
                drop(values);
                all_codes.extend_from_slice(bytemuck::cast_slice(&qw.codes));
                all_scales.extend(qw.scales_tensor()?.bytes);
                globals.push(qw.global);
            }
            backend.upload(codes, &all_codes)?;
            backend.upload(scales, &all_scales)?;
            match global {
                Some((g, _)) => backend.upload(g, &encode(DType::F32, &globals)),
                None => Ok(()),
            }
        }
        WeightData::Random { seed, scale, .. } => {
            // Any word is a valid set of integer or E2M1 codes: the bits of seeded uniform f32s
            // will do (the model is random anyway; what matters is the bytes read). FP8 words
            // (and NVFP4's E4M3 scale words) would hold NaN codes that way: they get an integer
            // below 0x7f each (one positive byte and three zeros, so three of four NVFP4 groups
            // dequantize to zero). Q4z's scale words get the f16 bits of scales near the
            // full-precision range with a zero point of 8; other scales those values as they are.
            let random = |seed: u64, (offset, amp): (f32, f32), d: &TensorDesc, to: BufferId| {
                let op = Op::Random { seed, offset, scale: amp, dtype: d.dtype, shape: d.shape.clone() };
                backend.launch(&Kernel { op, inputs: vec![], output: d.clone() }, &[], to)
            };
            let bytes = (63.0, 63.0);
            if q.format == QFormat::Fp8 {
                random(seed, bytes, cd, codes)?;
            } else {
                random(seed, (0.0, 1.0), &TensorDesc::new(DType::F32, cd.shape.clone()), codes)?;
            }
            let seed2 = seed ^ 0x9e37_79b9_7f4a_7c15;
            let s = scale / q.format.qmax() as f32;
            match global {
                Some((g, gd)) => {
                    random(seed2, bytes, sd, scales)?;
                    random(seed2 ^ 1, (s / 64.0, s / 128.0), gd, g)
                }
                None if q.format.has_zero() => {
                    // Within one f16 binade around s: bits +- a sixteenth of a binade's 1024.
                    let word = crate::quant::q4z_word(half::f16::from_f32(s), 8) as f32;
                    random(seed2, (word, 64.0), sd, scales)
                }
                None => random(seed2, (s, s / 2.0), sd, scales),
            }
        }
    }
}
