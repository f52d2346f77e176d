//! torch's uint8 antialiased separable resize (PIL's kernels with 16-bit fixed-point weights,
//! horizontal pass first, each pass rounded to u8), which the Qwen2-VL image processor uses.

use super::{Resample, RgbImage};

/// One output position's taps: first input index and 16-bit fixed-point weights.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i16>>,
    precision: u32,
}

impl Resample {
    /// The filter's half-width at scale 1.
    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    /// torch's `aa_filter`s (the cubic with a = -0.5 as PIL, written as torch evaluates it).
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Antialiased taps for resizing one axis from `in_size` to `out_size`, as torch computes them
/// for uint8 images (`_compute_indices_int16_weights_aa`): when shrinking, the kernel widens by
/// the scale; weights are normalised in f64, then scaled to the largest precision that keeps the
/// biggest weight within an i16.
fn taps(in_size: usize, out_size: usize, filter: Resample) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let (support, invscale) =
        if scale >= 1.0 { (filter.support() * scale, 1.0 / scale) } else { (filter.support(), 1.0) };
    let mut start = Vec::with_capacity(out_size);
    let mut float_weights = Vec::with_capacity(out_size);
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        // `as i64` truncates toward zero like the C++ static_cast.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let mut w: Vec<f64> = (xmin..xmax).map(|j| filter.weight(((j as f64) - center + 0.5) * invscale)).collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            w.iter_mut().for_each(|v| *v /= total);
        }
        start.push(xmin as usize);
        float_weights.push(w);
    }
    let w_max = float_weights.iter().flatten().fold(0f64, |m, &v| m.max(v));
    let mut precision = 0u32;
    while precision < 22 {
        if (0.5 + w_max * f64::from(1u32 << (precision + 1))) as i32 >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let unit = f64::from(1u32 << precision);
    let weights = float_weights
        .iter()
        .map(|w| {
            w.iter().map(|&v| if v < 0.0 { (-0.5 + v * unit) as i32 } else { (0.5 + v * unit) as i32 } as i16).collect()
        })
        .collect();
    Taps { start, weights, precision }
}

/// Fixed-point sum to u8 as torch does it: start from half a unit, shift, saturate.
fn to_u8(acc: i32, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// Resamples each row of an interleaved RGB image from `in_w` to the taps' output width.
fn horizontal(src: &[u8], in_w: usize, taps: &Taps) -> Vec<u8> {
    let out_w = taps.start.len();
    let round = 1i32 << (taps.precision - 1);
    let mut out = Vec::with_capacity(src.len() / in_w.max(1) * out_w);
    for row in src.chunks_exact(in_w * 3) {
        for (&start, w) in taps.start.iter().zip(&taps.weights) {
            let mut acc = [round; 3];
            for (px, &wk) in row[start * 3..].chunks_exact(3).zip(w) {
                for c in 0..3 {
                    acc[c] += i32::from(px[c]) * i32::from(wk);
                }
            }
            out.extend(acc.map(|a| to_u8(a, taps.precision)));
        }
    }
    out
}

/// Resamples the columns of an interleaved RGB image, a whole output row at a time.
fn vertical(src: &[u8], width: usize, taps: &Taps) -> Vec<u8> {
    let line = width * 3;
    let round = 1i32 << (taps.precision - 1);
    let mut out = Vec::with_capacity(taps.start.len() * line);
    let mut acc = vec![0i32; line];
    for (&start, w) in taps.start.iter().zip(&taps.weights) {
        acc.fill(round);
        for (k, &wk) in w.iter().enumerate() {
            let row = &src[(start + k) * line..(start + k + 1) * line];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * i32::from(wk);
            }
        }
        out.extend(acc.iter().map(|&a| to_u8(a, taps.precision)));
    }
    out
}

/// Resizes like torchvision's `resize(..., BICUBIC, antialias=True)` on a uint8 CPU tensor:
/// separable, horizontal pass first, each pass rounded and clamped to u8.
pub(super) fn resize(image: &RgbImage, out_w: usize, out_h: usize, filter: Resample) -> RgbImage {
    let (in_w, in_h) = (image.width, image.height);
    let mut data =
        if out_w != in_w { horizontal(&image.data, in_w, &taps(in_w, out_w, filter)) } else { image.data.clone() };
    if out_h != in_h {
        data = vertical(&data, out_w, &taps(in_h, out_h, filter));
    }
    RgbImage { width: out_w, height: out_h, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_taps_copy() {
        let t = taps(7, 7, Resample::Bicubic);
        assert!(t.weights.iter().all(|w| w.iter().filter(|&&v| v != 0).count() == 1));
    }
}
