//! Weight-only quantization: the formats every backend reads, and quantizing / dequantizing
//! on the host.
//!
//! A quantized weight `[N, K]` (stored `[out, in]` like every lumen weight) is two tensors:
//! - `q`: `U32 [N, K * bits / 32]`, the codes of each row packed little-endian (code `k` of a
//!   row sits in word `k / per_word`, bits `(k % per_word) * bits ..`);
//! - `scales`: `F16 [N, K / group]` (`F32` for FP8), one scale per group of `group` consecutive
//!   inputs.
//!
//! `Q8`: codes are two's-complement int8 `c`, `w = c * scale`. `Q4`: codes are `c + 8` for `c`
//! in `-8..=7` (4 bits unsigned), `w = (code - 8) * scale`. No zero point. Per group the scale
//! is the better (lower squared error) of two: `max|w| / qmax` (symmetric: every weight within
//! half a step) and `-m / (qmax + 1)` with `m` the group's largest-magnitude weight, which
//! maps `m` to the one code beyond `qmax` (llama.cpp's Q4_0 choice: one more level, so a finer
//! step; the scale may be negative). Either way every weight is within one step.
//!
//! `Q4z`: int4 with zero points, as AWQ / GPTQ / asymmetric compressed-tensors checkpoints
//! store them: codes are unsigned `0..=15`, `w = (code - zero) * scale`, each group's scale
//! (f16) and zero point (`0..=255`, checkpoints' 4-bit zeros, or 16 from GPTQ's off-by-one
//! legacy format) packed into one u32 word of `scales`: the scale's bits in bits 0..16, the zero
//! in bits 16..24. Quantizing picks, per group, the scale and zero mapping the group's minimum
//! and maximum onto codes 0 and 15, or a narrower range where that has the lower squared error.
//!
//! `Fp8`: codes are E4M3 bytes ([`fp8`]), `w = value(code) * scale` with the f32 scale
//! `max|w| / 448` per group (groups of 128 by default, as FP8 checkpoints' 128 x 128 blocks;
//! a checkpoint's block scales become the scales of its rows' groups exactly). An FP8 weight's
//! bytes in a checkpoint are its codes as they are.

use crate::graph::DType;
use crate::{Error, HostTensor, Result};
use half::f16;

pub mod fp4;
pub mod fp8;

/// A quantized weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QFormat {
    /// int8 codes, f16 scale per group.
    Q8,
    /// int4 codes, f16 scale per group.
    Q4,
    /// int4 codes with a zero point and an f16 scale per group, both in one u32 word.
    Q4z,
    /// FP8 E4M3 codes (`float8_e4m3fn`), f32 scale per group.
    Fp8,
    /// NVFP4: FP4 E2M1 codes, an E4M3 scale per 16 (packed four to a u32 word) and an f32
    /// global scale per weight (a further input of the op).
    Nvfp4,
}

impl QFormat {
    /// Parses `q8` / `q4`.
    pub fn parse(s: &str) -> Result<QFormat> {
        match s {
            "q8" => Ok(QFormat::Q8),
            "q4" => Ok(QFormat::Q4),
            "q4z" => Ok(QFormat::Q4z),
            "fp8" => Ok(QFormat::Fp8),
            "nvfp4" => Ok(QFormat::Nvfp4),
            other => Err(Error::Input(format!("unknown quantization `{other}`: use q8, q4, q4z, fp8 or nvfp4"))),
        }
    }

    /// `q8` / `q4`.
    pub fn name(self) -> &'static str {
        match self {
            QFormat::Q8 => "q8",
            QFormat::Q4 => "q4",
            QFormat::Q4z => "q4z",
            QFormat::Fp8 => "fp8",
            QFormat::Nvfp4 => "nvfp4",
        }
    }

    /// Bits per code.
    pub fn bits(self) -> usize {
        match self {
            QFormat::Q8 | QFormat::Fp8 => 8,
            QFormat::Q4 | QFormat::Q4z | QFormat::Nvfp4 => 4,
        }
    }

    /// The scales' dtype: f16 for the integer formats, f32 for FP8 (whose checkpoints carry
    /// f32 block scales, kept exactly), u32 words for NVFP4 (four E4M3 scales) and Q4z (scale
    /// and zero point).
    pub fn scale_dtype(self) -> DType {
        match self {
            QFormat::Fp8 => DType::F32,
            QFormat::Nvfp4 | QFormat::Q4z => DType::U32,
            _ => DType::F16,
        }
    }

    /// Scales per element of the scales tensor: 4 E4M3 bytes per u32 word for NVFP4, else 1.
    pub fn scales_per_word(self) -> usize {
        if self == QFormat::Nvfp4 {
            4
        } else {
            1
        }
    }

    /// Whether a weight carries an f32 global scale besides its codes and scales (NVFP4).
    pub fn has_global(self) -> bool {
        self == QFormat::Nvfp4
    }

    /// Codes per 32-bit word.
    pub fn per_word(self) -> usize {
        32 / self.bits()
    }

    /// Whether groups carry a zero point (Q4z).
    pub fn has_zero(self) -> bool {
        self == QFormat::Q4z
    }

    /// Largest positive integer code (the most negative is `-qmax - 1`; Q4z's codes are
    /// `0..=15`); FP8's largest magnitude, 448.
    pub fn qmax(self) -> i32 {
        match self {
            QFormat::Q8 => 127,
            QFormat::Q4 => 7,
            QFormat::Q4z => 15,
            QFormat::Fp8 => fp8::E4M3_MAX as i32,
            QFormat::Nvfp4 => fp4::E2M1_MAX as i32,
        }
    }

    /// The group size used unless a checkpoint says otherwise (FP8: the 128 of FP8
    /// checkpoints' blocks).
    pub fn default_group(self) -> usize {
        match self {
            QFormat::Fp8 => 128,
            QFormat::Nvfp4 => 16,
            _ => 32,
        }
    }

    /// Bytes of a `[n, k]` weight in this format with groups of `group` (codes and scales).
    pub fn bytes(self, n: usize, k: usize, group: usize) -> usize {
        let scales = n * (k / group) * self.scale_dtype().size() / self.scales_per_word();
        n * k * self.bits() / 8 + scales + if self.has_global() { 4 } else { 0 }
    }

    /// Checks that the format takes groups of `group` inputs.
    pub fn check_group(self, group: usize) -> Result<()> {
        if self == QFormat::Nvfp4 && group != 16 {
            return Err(Error::Input(format!("nvfp4: groups of 16 inputs, not {group}")));
        }
        self.check(group * 4, group)
    }

    /// Checks that a `[n, k]` weight can be stored with groups of `group`.
    pub fn check(self, k: usize, group: usize) -> Result<()> {
        if group == 0 || !group.is_multiple_of(self.per_word()) {
            return Err(Error::Input(format!(
                "{}: the group size must be a positive multiple of {}, got {group}",
                self.name(),
                self.per_word()
            )));
        }
        if !k.is_multiple_of(group) {
            return Err(Error::Input(format!(
                "{}: the input size {k} is not a multiple of the group size {group}",
                self.name()
            )));
        }
        if self == QFormat::Nvfp4 && (group != 16 || !k.is_multiple_of(64)) {
            return Err(Error::Input(format!(
                "nvfp4: groups of 16 (got {group}) over an input size that is a multiple of 64 (four scale bytes \
                 a word; got {k})"
            )));
        }
        Ok(())
    }

    fn encode(self, c: i32) -> u32 {
        match self {
            QFormat::Q8 | QFormat::Fp8 => (c as i8 as u8) as u32,
            QFormat::Q4 => (c + 8) as u32,
            QFormat::Q4z => c as u32,
            QFormat::Nvfp4 => unreachable!("E2M1 codes come from fp4::f32_to_e2m1"),
        }
    }

    /// The value of a code (its low `bits` bits): the signed integer (Q4z: unsigned, before
    /// its zero point), or the E4M3 / E2M1 number.
    pub fn value(self, code: u32) -> f32 {
        match self {
            QFormat::Q8 => (code & 0xff) as u8 as i8 as f32,
            QFormat::Q4 => ((code & 0xf) as i32 - 8) as f32,
            QFormat::Q4z => (code & 0xf) as f32,
            QFormat::Fp8 => fp8::e4m3_to_f32(code as u8),
            QFormat::Nvfp4 => fp4::e2m1_to_f32(code),
        }
    }
}

/// The scales of a scales tensor's bytes as f32 (NVFP4: one E4M3 byte each; Q4z: the low
/// halves of its words).
pub fn scales_from_bytes(format: QFormat, bytes: &[u8]) -> Vec<f32> {
    match format {
        QFormat::Nvfp4 => bytes.iter().map(|&b| fp8::e4m3_to_f32(b)).collect(),
        QFormat::Q4z => bytes.chunks_exact(4).map(|w| f16::from_le_bytes([w[0], w[1]]).to_f32()).collect(),
        f => crate::tensor::decode(f.scale_dtype(), bytes),
    }
}

/// The zero points of a scales tensor's bytes (Q4z: byte 2 of each word; empty for the formats
/// without zero points).
pub fn zeros_from_bytes(format: QFormat, bytes: &[u8]) -> Vec<u8> {
    if format.has_zero() {
        bytes.chunks_exact(4).map(|w| w[2]).collect()
    } else {
        Vec::new()
    }
}

/// A Q4z scale word: the f16 scale's bits, the zero point in bits 16..24.
pub fn q4z_word(scale: f16, zero: u8) -> u32 {
    scale.to_bits() as u32 | (zero as u32) << 16
}

/// A quantized `[n, k]` weight on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// The format.
    pub format: QFormat,
    /// Inputs per scale.
    pub group: usize,
    /// Rows (outputs).
    pub n: usize,
    /// Columns (inputs).
    pub k: usize,
    /// Packed codes, `k * bits / 32` words per row.
    pub codes: Vec<u32>,
    /// One scale per row and group, row-major (f16 values for the integer formats, E4M3 values
    /// for NVFP4).
    pub scales: Vec<f32>,
    /// One zero point per row and group (Q4z; empty for the other formats).
    pub zeros: Vec<u8>,
    /// The weight's global scale (NVFP4; 1 for the other formats).
    pub global: f32,
}

/// Quantizes a row-major `[n, k]` weight. Non-finite weights, and groups whose scale an f16
/// cannot hold, are errors (such a tensor should stay in full precision).
pub fn quantize(w: &[f32], n: usize, k: usize, format: QFormat, group: usize) -> Result<Quantized> {
    format.check(k, group)?;
    if w.len() != n * k {
        return Err(Error::Input(format!("a [{n}, {k}] weight needs {} values, got {}", n * k, w.len())));
    }
    if let Some(bad) = w.iter().find(|v| !v.is_finite()) {
        return Err(Error::Input(format!("cannot quantize a weight holding {bad}")));
    }
    if format == QFormat::Fp8 {
        return quantize_fp8(w, n, k, group);
    }
    if format == QFormat::Nvfp4 {
        return Ok(quantize_nvfp4(w, n, k));
    }
    if format == QFormat::Q4z {
        return quantize_q4z(w, n, k, group);
    }
    let (per, bits, qmax) = (format.per_word(), format.bits(), format.qmax() as f32);
    let mut codes = vec![0u32; n * k / per];
    let mut scales = Vec::with_capacity(n * k / group);
    let mut best = vec![0i32; group];
    let mut trial = vec![0i32; group];
    for (r, row) in w.chunks_exact(k).enumerate() {
        for (g, vals) in row.chunks_exact(group).enumerate() {
            let m = vals.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let mut chosen = (f16::ZERO, f32::INFINITY);
            for candidate in [m.abs() / qmax, -m / (qmax + 1.0)] {
                let scale = f16::from_f32(candidate);
                if scale.is_infinite() {
                    return Err(Error::Input(format!(
                        "weights up to {:e} need a scale beyond f16's range ({} scales)",
                        m.abs(),
                        format.name()
                    )));
                }
                // Codes from the stored (rounded) scale, so dequantizing sees the same scale.
                let sc = scale.to_f32();
                let mut err = 0f32;
                for (c, v) in trial.iter_mut().zip(vals) {
                    *c = if sc != 0.0 { (v / sc).round().clamp(-qmax - 1.0, qmax) as i32 } else { 0 };
                    err += (v - *c as f32 * sc).powi(2);
                }
                if err < chosen.1 {
                    chosen = (scale, err);
                    best.copy_from_slice(&trial);
                }
            }
            scales.push(chosen.0.to_f32());
            for (i, &c) in best.iter().enumerate() {
                let at = r * k + g * group + i;
                codes[at / per] |= format.encode(c) << ((at % per) * bits);
            }
        }
    }
    Ok(Quantized { format, group, n, k, codes, scales, zeros: Vec::new(), global: 1.0 })
}

impl Quantized {
    /// The weights back as f32, row-major `[n, k]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let (per, bits) = (self.format.per_word(), self.format.bits());
        (0..self.n * self.k)
            .map(|at| {
                let code = self.codes[at / per] >> ((at % per) * bits);
                let g = at / self.k * (self.k / self.group) + at % self.k / self.group;
                let zero = self.zeros.get(g).map_or(0.0, |&z| z as f32);
                (self.format.value(code) - zero) * self.scales[g] * self.global
            })
            .collect()
    }

    /// The codes as a `U32 [n, k * bits / 32]` tensor.
    pub fn codes_tensor(&self) -> Result<HostTensor> {
        HostTensor::from_u32([self.n, self.k / self.format.per_word()], &self.codes)
    }

    /// The scales as a `[n, k / group]` tensor of the format's scale dtype (NVFP4: `U32
    /// [n, k / group / 4]`, four E4M3 bytes a word).
    pub fn scales_tensor(&self) -> Result<HostTensor> {
        let per = self.format.scales_per_word();
        let shape = [self.n, self.k / self.group / per];
        if self.format == QFormat::Q4z {
            let words: Vec<u32> =
                self.scales.iter().zip(&self.zeros).map(|(&s, &z)| q4z_word(f16::from_f32(s), z)).collect();
            return HostTensor::from_u32(shape, &words);
        }
        if self.format != QFormat::Nvfp4 {
            return HostTensor::from_f32(self.format.scale_dtype(), shape, &self.scales);
        }
        let bytes: Vec<u8> = self.scales.iter().map(|&s| fp8::f32_to_e4m3(s)).collect();
        HostTensor::from_bytes(crate::graph::TensorDesc::new(DType::U32, shape), bytes)
    }
}

/// Q4z: per group, of the candidate ranges `[lo, hi]` (the group's minimum and maximum, each
/// widened to hold 0, and ranges with one end pulled in by up to 20%), the one whose codes give the lowest
/// squared error; the scale `(hi - lo) / 15` (rounded to f16) and the zero point
/// `round(-lo / scale)` in `0..=15`, so that zero itself is exact.
fn quantize_q4z(w: &[f32], n: usize, k: usize, group: usize) -> Result<Quantized> {
    let mut codes = vec![0u32; n * k / 8];
    let mut scales = Vec::with_capacity(n * k / group);
    let mut zeros = Vec::with_capacity(n * k / group);
    let mut best = vec![0u32; group];
    let mut trial = vec![0u32; group];
    for (g, vals) in w.chunks_exact(group).enumerate() {
        let lo = vals.iter().fold(0f32, |m, &v| m.min(v));
        let hi = vals.iter().fold(0f32, |m, &v| m.max(v));
        let mut chosen = (f16::ZERO, 0u8, f32::INFINITY);
        for shrink in [1.0f32, 0.95, 0.9, 0.85, 0.8] {
            for (l, h) in [(lo * shrink, hi), (lo, hi * shrink)] {
                let scale = f16::from_f32((h - l) / 15.0);
                if scale.is_infinite() {
                    return Err(Error::Input(format!(
                        "weights spanning [{lo:e}, {hi:e}] need a scale beyond f16's range (q4z scales)"
                    )));
                }
                let sc = scale.to_f32();
                let zero = if sc > 0.0 { (-l / sc).round().clamp(0.0, 15.0) } else { 0.0 };
                let mut err = 0f32;
                for (c, v) in trial.iter_mut().zip(vals) {
                    *c = if sc > 0.0 { (v / sc + zero).round().clamp(0.0, 15.0) as u32 } else { 0 };
                    err += (v - (*c as f32 - zero) * sc).powi(2);
                }
                if err < chosen.2 {
                    chosen = (scale, zero as u8, err);
                    best.copy_from_slice(&trial);
                }
            }
        }
        scales.push(chosen.0.to_f32());
        zeros.push(chosen.1);
        for (i, &c) in best.iter().enumerate() {
            let at = g * group + i;
            codes[at / 8] |= c << ((at % 8) * 4);
        }
    }
    Ok(Quantized { format: QFormat::Q4z, group, n, k, codes, scales, zeros, global: 1.0 })
}

/// FP8: per group, the f32 scale `max|w| / 448` and each weight's nearest E4M3 code.
fn quantize_fp8(w: &[f32], n: usize, k: usize, group: usize) -> Result<Quantized> {
    let mut codes = vec![0u32; n * k / 4];
    let mut scales = Vec::with_capacity(n * k / group);
    for (g, vals) in w.chunks_exact(group).enumerate() {
        let amax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / fp8::E4M3_MAX;
        if amax > 0.0 && scale < f32::MIN_POSITIVE {
            return Err(Error::Input(format!(
                "weights of at most {amax:e} need an fp8 scale below f32's normal range"
            )));
        }
        scales.push(scale);
        for (i, &v) in vals.iter().enumerate() {
            let at = g * group + i;
            let c = if scale > 0.0 { fp8::f32_to_e4m3(v / scale) } else { 0 };
            codes[at / 4] |= (c as u32) << ((at % 4) * 8);
        }
    }
    Ok(Quantized { format: QFormat::Fp8, group, n, k, codes, scales, zeros: Vec::new(), global: 1.0 })
}

/// NVFP4 as NVIDIA's recipe makes it: the global scale `max|w| / (448 * 6)`, per 16 inputs the
/// E4M3 scale nearest `max|w_16| / 6 / global`, each weight's nearest E2M1 code of
/// `w / (scale * global)`.
fn quantize_nvfp4(w: &[f32], n: usize, k: usize) -> Quantized {
    let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let global = if amax > 0.0 { amax / (fp8::E4M3_MAX * fp4::E2M1_MAX) } else { 1.0 };
    let mut codes = vec![0u32; n * k / 8];
    let mut scales = Vec::with_capacity(n * k / 16);
    for (g, vals) in w.chunks_exact(16).enumerate() {
        let m = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = fp8::e4m3_to_f32(fp8::f32_to_e4m3(m / fp4::E2M1_MAX / global));
        scales.push(scale);
        for (i, &v) in vals.iter().enumerate() {
            let at = g * 16 + i;
            let c = if scale > 0.0 { fp4::f32_to_e2m1(v / (scale * global)) } else { 0 };
            codes[at / 8] |= c << ((at % 8) * 4);
        }
    }
    Quantized { format: QFormat::Nvfp4, group: 16, n, k, codes, scales, zeros: Vec::new(), global }
}

#[cfg(test)]
mod tests;
