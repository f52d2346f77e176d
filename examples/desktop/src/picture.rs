//! Images in and out: an opened image (its bytes for the model, a small copy for the window)
//! and the window's screenshot saved as PNG.

use eframe::egui::ColorImage;
use std::path::{Path, PathBuf};

/// The longest side of the preview texture, in pixels.
const PREVIEW: u32 = 1024;

/// An opened image.
pub struct Picture {
    /// Where it came from.
    pub path: PathBuf,
    /// The file's bytes, handed to the model as they are.
    pub bytes: Vec<u8>,
    /// Its size in pixels.
    pub size: [u32; 2],
    /// A copy at most `PREVIEW` pixels a side, for the window.
    pub preview: ColorImage,
}

/// Reads and decodes an image file (PNG or JPEG, what the model takes).
pub fn open(path: &Path) -> Result<Picture, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let image = image::load_from_memory(&bytes)
        .map_err(|e| format!("{} is not a PNG or JPEG image that can be read: {e}", path.display()))?;
    let size = [image.width(), image.height()];
    let small = if size[0].max(size[1]) > PREVIEW { image.thumbnail(PREVIEW, PREVIEW) } else { image };
    let rgba = small.to_rgba8();
    let preview = ColorImage::from_rgba_unmultiplied([rgba.width() as usize, rgba.height() as usize], rgba.as_raw());
    Ok(Picture { path: path.to_path_buf(), bytes, size, preview })
}

/// Saves a screenshot as an RGB PNG, making its folder if needed.
pub fn save_png(shot: &ColorImage, path: &Path) -> Result<(), String> {
    let [w, h] = shot.size;
    let rgb: Vec<u8> = shot.pixels.iter().flat_map(|c| [c.r(), c.g(), c.b()]).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    image::save_buffer_with_format(
        path,
        &rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| format!("cannot save {}: {e}", path.display()))
}
