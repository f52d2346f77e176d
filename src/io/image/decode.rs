//! Decoding JPEG / PNG into RGB8 as transformers' `convert_to_rgb` does: EXIF orientation applied,
//! alpha composited onto white (PIL's integer `alpha_composite`), grey and 16-bit widened/narrowed;
//! oversized images refused from their header.

use super::MAX_DECODED_PIXELS;
use crate::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// An 8-bit RGB image, row-major, three bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

/// Decodes PNG or JPEG bytes to 8-bit RGB the way transformers prepares a PIL image: EXIF
/// orientation applied, grey replicated, transparency composited onto white, 16-bit samples
/// cut to their high byte.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::Input("image is empty (0 bytes)".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Input(format!("cannot read image: {e}")))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Some(other) => {
            return Err(Error::Input(format!(
                "unsupported image format {}: lumen reads PNG and JPEG",
                other.extensions_str().first().copied().unwrap_or("?").to_uppercase()
            )))
        }
        None => return Err(Error::Input("unrecognised image data: not a PNG or JPEG file".into())),
    };
    let name = if format == ImageFormat::Png { "PNG" } else { "JPEG" };
    let mut limits = Limits::default();
    // Room for the largest accepted image at 16-bit RGBA plus the decoder's own buffers.
    limits.max_alloc = Some(MAX_DECODED_PIXELS * 8 + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| Error::Input(format!("corrupt {name} header: {e}")))?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_DECODED_PIXELS {
        return Err(Error::Input(format!(
            "{name} image is {w}x{h} = {} pixels, more than the {MAX_DECODED_PIXELS} lumen accepts",
            u64::from(w) * u64::from(h)
        )));
    }
    if w == 0 || h == 0 {
        return Err(Error::Input(format!("{name} image is {w}x{h}: both sides must be positive")));
    }
    // A broken EXIF block is not worth rejecting the image for: PIL's exif_transpose ignores it too.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| Error::Input(format!("corrupt {name} data: {e}")))?;
    img.apply_orientation(orientation);
    Ok(to_rgb8(img))
}

/// PIL's `alpha_composite` of one pixel over opaque white, in its integer arithmetic (7 extra bits,
/// divisions by 255 done with shifts), so composited pixels match transformers' `convert_to_rgb` exactly.
fn over_white(rgb: [u8; 3], a: u8) -> [u8; 3] {
    if a == 0 {
        return [255; 3];
    }
    const PREC: u32 = 7;
    let div255 = |x: u32| ((x >> 8) + x) >> 8;
    let a = u32::from(a);
    let outa255 = a * 255 + 255 * (255 - a);
    let coef1 = a * 255 * 255 * (1 << PREC) / outa255;
    let coef2 = 255 * (1 << PREC) - coef1;
    rgb.map(|c| (div255(u32::from(c) * coef1 + 255 * coef2 + (0x80 << PREC)) >> PREC) as u8)
}

fn to_rgb8(img: DynamicImage) -> RgbImage {
    let (width, height) = (img.width() as usize, img.height() as usize);
    // PIL reads 16-bit PNG colour as its high byte. (It clips 16-bit grey to 255 instead, which
    // whitens the image; lumen takes the high byte there too.)
    let hi = |v: u16| (v >> 8) as u8;
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().flat_map(|l| [l; 3]).collect(),
        DynamicImage::ImageRgba8(b) => b.pixels().flat_map(|p| over_white([p.0[0], p.0[1], p.0[2]], p.0[3])).collect(),
        DynamicImage::ImageLumaA8(b) => b.pixels().flat_map(|p| over_white([p.0[0]; 3], p.0[1])).collect(),
        DynamicImage::ImageRgb16(b) => b.into_raw().into_iter().map(hi).collect(),
        DynamicImage::ImageLuma16(b) => b.into_raw().into_iter().flat_map(|l| [hi(l); 3]).collect(),
        DynamicImage::ImageRgba16(b) => {
            b.pixels().flat_map(|p| over_white([hi(p.0[0]), hi(p.0[1]), hi(p.0[2])], hi(p.0[3]))).collect()
        }
        DynamicImage::ImageLumaA16(b) => b.pixels().flat_map(|p| over_white([hi(p.0[0]); 3], hi(p.0[1]))).collect(),
        // Float images never come out of the PNG and JPEG decoders; convert generically.
        other => other.to_rgba8().pixels().flat_map(|p| over_white([p.0[0], p.0[1], p.0[2]], p.0[3])).collect(),
    };
    RgbImage { width, height, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_white_matches_pil_corners() {
        assert_eq!(over_white([10, 20, 30], 255), [10, 20, 30]);
        assert_eq!(over_white([10, 20, 30], 0), [255, 255, 255]);
        assert_eq!(over_white([0, 0, 0], 128), [127, 127, 127]);
    }
}
