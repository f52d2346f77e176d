//! Image preprocessing identical in effect to transformers' Qwen2-VL image processor (the
//! torchvision `Qwen2VLImageProcessor` that Qwen3-VL checkpoints load): decode, resize, normalise, patchify.
//!
//! Every step reproduces the reference bit for bit where it can: `smart_resize` rounds half to
//! even like Python, the resize is torch's uint8 antialiased separable filter (PIL's kernel with
//! 16-bit fixed-point weights, horizontal pass first, each pass rounded to u8), RGBA is composited
//! onto white with PIL's integer `alpha_composite`, and normalisation runs in f32 in torch's order.

mod decode;
mod resize;

pub use decode::{decode_rgb, RgbImage};
use resize::resize;

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// Largest decoded image accepted, in pixels (8192 x 8192); checked from the header before decoding.
pub const MAX_DECODED_PIXELS: u64 = 1 << 26;

/// Image processor settings, read from a checkpoint's `preprocessor_config.json`.
///
/// Fields missing from the file take the defaults of transformers' `Qwen2VLImageProcessor` class
/// (patch 14, CLIP mean/std), as transformers does; [`ImageConfig::qwen3_vl`] gives the values
/// Qwen3-VL checkpoints ship.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// Side of a square vision patch in pixels (16 for Qwen3-VL).
    pub patch_size: usize,
    /// Frames per temporal patch; a still image is repeated this many times (2).
    pub temporal_patch_size: usize,
    /// Side of the window of patches the merger folds into one token (2).
    pub merge_size: usize,
    /// Fewest pixels after resizing (`size.shortest_edge`, or `min_pixels` in older files).
    pub min_pixels: usize,
    /// Most pixels after resizing (`size.longest_edge`, or `max_pixels` in older files).
    pub max_pixels: usize,
    /// Per-channel mean subtracted after rescaling.
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub image_std: [f32; 3],
    /// Factor taking u8 values to [0, 1] (1/255).
    pub rescale_factor: f64,
    /// Resampling filter (PIL's numbering: 2 bilinear, 3 bicubic).
    pub resample: Resample,
    /// Resize to the `smart_resize` size; when false the image must already be a multiple of
    /// `patch_size * merge_size` on both sides.
    pub do_resize: bool,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Subtract `image_mean` and divide by `image_std`.
    pub do_normalize: bool,
    /// Convert to RGB. The vision tower takes three channels, so lumen converts grey and
    /// transparent images whatever this says; the field is kept so a config round-trips.
    pub do_convert_rgb: bool,
}

/// The resampling filters the processor can be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// Triangle filter (PIL `BILINEAR`, 2).
    Bilinear,
    /// Keys cubic with a = -0.5 (PIL `BICUBIC`, 3), the Qwen2-VL / Qwen3-VL default.
    Bicubic,
}

/// A preprocessed image: flattened patches in the order the vision tower's patch embedding reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// `[grid_t * grid_h * grid_w, 3 * temporal_patch_size * patch_size^2]`, row-major. Rows come
    /// in merge-window order (window row, window column, row in window, column in window); each row
    /// is (channel, frame, y, x).
    pub data: Vec<f32>,
    /// Patches along time, height and width.
    pub grid_thw: [usize; 3],
}

impl Pixels {
    /// Number of patches (rows of `data`).
    pub fn num_patches(&self) -> usize {
        self.grid_thw.iter().product()
    }

    /// Values per patch (columns of `data`).
    pub fn patch_dim(&self) -> usize {
        self.data.len().checked_div(self.num_patches()).unwrap_or(0)
    }

    /// Number of `<|image_pad|>` tokens this image takes after the merger folds
    /// `merge_size x merge_size` patches into one.
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        self.num_patches() / (merge_size * merge_size).max(1)
    }
}

/// `image_mean` / `image_std` may be one number for all channels or one per channel.
#[derive(Deserialize)]
#[serde(untagged)]
enum PerChannel {
    One(f32),
    Many(Vec<f32>),
}

#[derive(Deserialize, Default)]
struct RawSize {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
}

#[derive(Deserialize)]
struct RawConfig {
    patch_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    merge_size: Option<usize>,
    size: Option<RawSize>,
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
    image_mean: Option<PerChannel>,
    image_std: Option<PerChannel>,
    rescale_factor: Option<f64>,
    resample: Option<u32>,
    do_resize: Option<bool>,
    do_rescale: Option<bool>,
    do_normalize: Option<bool>,
    do_convert_rgb: Option<bool>,
    /// transformers 5.x `ProcessorMixin.save_pretrained` nests the image processor's settings here
    /// inside `processor_config.json`.
    image_processor: Option<Box<RawConfig>>,
}

const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl Default for ImageConfig {
    /// transformers' `Qwen2VLImageProcessor` class defaults, which fill fields a file leaves out.
    fn default() -> Self {
        ImageConfig {
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            rescale_factor: 1.0 / 255.0,
            resample: Resample::Bicubic,
            do_resize: true,
            do_rescale: true,
            do_normalize: true,
            do_convert_rgb: true,
        }
    }
}

impl ImageConfig {
    /// The settings every published Qwen3-VL checkpoint ships: patch 16, sizes within
    /// [256^2, 4096^2] pixels, mean = std = 0.5.
    pub fn qwen3_vl() -> Self {
        ImageConfig {
            patch_size: 16,
            min_pixels: 65_536,
            max_pixels: 16_777_216,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            ..ImageConfig::default()
        }
    }

    /// Parses `preprocessor_config.json` text (or a `processor_config.json` holding an
    /// `image_processor` object); unknown fields are ignored.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::Model(format!("image processor config: {e}")))?;
        Self::from_raw(raw)
    }

    /// Reads `preprocessor_config.json` (or `processor_config.json`) from `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Model(msg) => Error::Model(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    fn from_raw(raw: RawConfig) -> Result<Self> {
        if let Some(inner) = raw.image_processor {
            return Self::from_raw(*inner);
        }
        let d = ImageConfig::default();
        let size = raw.size.unwrap_or_default();
        // Same precedence as Qwen2VLImageProcessor.__init__: top-level min/max_pixels override `size`.
        let min_pixels = raw.min_pixels.or(size.shortest_edge).or(size.min_pixels).unwrap_or(d.min_pixels);
        let max_pixels = raw.max_pixels.or(size.longest_edge).or(size.max_pixels).unwrap_or(d.max_pixels);
        let resample = match raw.resample {
            None | Some(3) => Resample::Bicubic,
            Some(2) => Resample::Bilinear,
            Some(other) => {
                return Err(Error::Model(format!(
                    "image processor config: resample {other} is not supported (2 bilinear and 3 bicubic are)"
                )))
            }
        };
        let cfg = ImageConfig {
            patch_size: raw.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: raw.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: raw.merge_size.unwrap_or(d.merge_size),
            min_pixels,
            max_pixels,
            image_mean: per_channel(raw.image_mean, d.image_mean, "image_mean")?,
            image_std: per_channel(raw.image_std, d.image_std, "image_std")?,
            rescale_factor: raw.rescale_factor.unwrap_or(d.rescale_factor),
            resample,
            do_resize: raw.do_resize.unwrap_or(d.do_resize),
            do_rescale: raw.do_rescale.unwrap_or(d.do_rescale),
            do_normalize: raw.do_normalize.unwrap_or(d.do_normalize),
            do_convert_rgb: raw.do_convert_rgb.unwrap_or(d.do_convert_rgb),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Model(format!("image processor config: {msg}")));
        let sane = |v: usize| (1..=1024).contains(&v);
        if !(sane(self.patch_size) && sane(self.temporal_patch_size) && sane(self.merge_size)) {
            return bad(format!(
                "patch_size {}, temporal_patch_size {} and merge_size {} must be within 1..=1024",
                self.patch_size, self.temporal_patch_size, self.merge_size
            ));
        }
        if self.min_pixels > self.max_pixels {
            return bad(format!("min_pixels {} exceeds max_pixels {}", self.min_pixels, self.max_pixels));
        }
        if self.image_std.contains(&0.0) {
            return bad(format!("image_std {:?} has a zero", self.image_std));
        }
        if !(self.rescale_factor.is_finite() && self.rescale_factor > 0.0) {
            return bad(format!("rescale_factor {} must be positive", self.rescale_factor));
        }
        Ok(())
    }
}

fn per_channel(v: Option<PerChannel>, default: [f32; 3], name: &str) -> Result<[f32; 3]> {
    match v {
        None => Ok(default),
        Some(PerChannel::One(x)) => Ok([x; 3]),
        Some(PerChannel::Many(xs)) => <[f32; 3]>::try_from(xs.as_slice())
            .map_err(|_| Error::Model(format!("image processor config: {name} has {} values, expected 3", xs.len()))),
    }
}

/// The size transformers resizes an image to: both sides multiples of `factor`, area within
/// `[min_pixels, max_pixels]`, aspect ratio kept as closely as possible.
///
/// Mirrors `smart_resize` in transformers' `image_processing_qwen2_vl.py`, including Python's
/// half-to-even `round` (a 400-pixel side with factor 32 becomes 384, not 416).
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    if height == 0 || width == 0 {
        return Err(Error::Input(format!("image is {width}x{height}: both sides must be positive")));
    }
    if factor == 0 {
        return Err(Error::Input("smart_resize: factor must be positive".into()));
    }
    // Beyond 2^53 pixels the float arithmetic below would no longer be exact (and no image is that big).
    let area = (height as u128) * (width as u128);
    if area > 1 << 53 || factor > 1 << 20 {
        return Err(Error::Input(format!("image is {width}x{height}: too large to resize")));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > 200.0 {
        return Err(Error::Input(format!(
            "image is {width}x{height}: absolute aspect ratio must be at most 200, got {ratio}"
        )));
    }
    // A side in whole blocks of `factor` pixels; a min_pixels too large to reach is an error, not an overflow.
    let side = |blocks: f64| -> Result<usize> {
        if blocks * f > f64::from(u32::MAX) {
            return Err(Error::Input(format!("image is {width}x{height}: it would resize to over 2^32 pixels a side")));
        }
        Ok(blocks as usize * factor)
    };
    let mut h_bar = side((h / f).round_ties_even())?;
    let mut w_bar = side((w / f).round_ties_even())?;
    if (h_bar as u128) * (w_bar as u128) > max_pixels as u128 {
        let beta = (area as f64 / max_pixels as f64).sqrt();
        h_bar = factor.max(side((h / beta / f).floor())?);
        w_bar = factor.max(side((w / beta / f).floor())?);
    } else if ((h_bar as u128) * (w_bar as u128)) < min_pixels as u128 {
        let beta = (min_pixels as f64 / area as f64).sqrt();
        h_bar = side((h * beta / f).ceil())?;
        w_bar = side((w * beta / f).ceil())?;
    }
    if h_bar == 0 || w_bar == 0 {
        return Err(Error::Input(format!(
            "image is {width}x{height}: it resizes to {w_bar}x{h_bar} (min_pixels {min_pixels} is too small)"
        )));
    }
    Ok((h_bar, w_bar))
}

/// Decodes a PNG or JPEG file and preprocesses it (see [`preprocess`]).
pub fn preprocess_file(config: &ImageConfig, path: impl AsRef<Path>) -> Result<Pixels> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    preprocess(config, &bytes).map_err(|e| match e {
        Error::Input(msg) => Error::Input(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Decodes a PNG or JPEG image and turns it into patches as transformers' Qwen2-VL processor
/// does: RGB conversion (alpha composited onto white), EXIF orientation applied, resize to the
/// [`smart_resize`] size, rescale, normalise, the frame repeated `temporal_patch_size` times,
/// patches flattened in merge-window order.
pub fn preprocess(config: &ImageConfig, bytes: &[u8]) -> Result<Pixels> {
    config.validate()?;
    let rgb = decode_rgb(bytes)?;
    preprocess_rgb(config, &rgb)
}

/// Runs everything after decoding (resize, rescale, normalise, patchify) on an RGB image.
pub fn preprocess_rgb(config: &ImageConfig, image: &RgbImage) -> Result<Pixels> {
    config.validate()?;
    let want = image.width.checked_mul(image.height).and_then(|n| n.checked_mul(3));
    if want != Some(image.data.len()) {
        return Err(Error::Input(format!(
            "an RGB image of {}x{} needs 3 bytes per pixel, got {} bytes",
            image.width,
            image.height,
            image.data.len()
        )));
    }
    let factor = config.patch_size * config.merge_size;
    let resized;
    let image = if config.do_resize {
        let (h, w) = smart_resize(image.height, image.width, factor, config.min_pixels, config.max_pixels)?;
        resized = resize(image, w, h, config.resample);
        &resized
    } else {
        if !image.height.is_multiple_of(factor)
            || !image.width.is_multiple_of(factor)
            || image.height == 0
            || image.width == 0
        {
            return Err(Error::Input(format!(
                "image is {}x{} and do_resize is off: both sides must be positive multiples of {factor}",
                image.width, image.height
            )));
        }
        image
    };
    let values = normalize(config, image);
    Ok(patchify(config, &values, image.width, image.height))
}

/// Rescale and normalise to planar `[3, H, W]` f32, in the arithmetic of the torchvision
/// processor: rescale is folded into mean and std (`mean / rescale_factor`) and applied as
/// `(x - mean') / std'` in f32.
fn normalize(config: &ImageConfig, image: &RgbImage) -> Vec<f32> {
    let plane = image.width * image.height;
    let inv = (1.0 / config.rescale_factor) as f32;
    let scale = config.rescale_factor as f32;
    let mut out = vec![0f32; 3 * plane];
    for c in 0..3 {
        let (mean, std) = if config.do_rescale {
            (config.image_mean[c] * inv, config.image_std[c] * inv)
        } else {
            (config.image_mean[c], config.image_std[c])
        };
        let dst = &mut out[c * plane..(c + 1) * plane];
        for (d, px) in dst.iter_mut().zip(image.data.chunks_exact(3)) {
            let x = f32::from(px[c]);
            *d = match (config.do_normalize, config.do_rescale) {
                (true, _) => (x - mean) / std,
                (false, true) => x * scale,
                (false, false) => x,
            };
        }
    }
    out
}

/// Cuts planar `[3, H, W]` values into patches ordered as transformers' `patchify`:
/// `[H/(P*M), W/(P*M), M, M, C, T, P, P]`, the frame repeated T times.
fn patchify(config: &ImageConfig, values: &[f32], width: usize, height: usize) -> Pixels {
    let (p, m, t) = (config.patch_size, config.merge_size, config.temporal_patch_size);
    let (gh, gw) = (height / p, width / p);
    let patch_dim = 3 * t * p * p;
    let mut data = Vec::with_capacity(gh * gw * patch_dim);
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                    for c in 0..3 {
                        let plane = &values[c * width * height..(c + 1) * width * height];
                        for _ in 0..t {
                            for y in y0..y0 + p {
                                data.extend_from_slice(&plane[y * width + x0..y * width + x0 + p]);
                            }
                        }
                    }
                }
            }
        }
    }
    Pixels { data, grid_thw: [1, gh, gw] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_rounds_half_to_even() {
        // 400 / 32 = 12.5 blocks: Python's round gives 12.
        assert_eq!(smart_resize(400, 800, 32, 1, 1 << 30).unwrap(), (384, 800));
        // 13.5 blocks rounds up to the even 14.
        assert_eq!(smart_resize(432, 800, 32, 1, 1 << 30).unwrap(), (448, 800));
    }
}
