//! Host-side position tables of a request, computed as transformers does: the multi-axis
//! text positions (`get_rope_index`), the vision patches' (row, col) in merge-block order, the
//! bilinear taps into the learned position table, and attention masks.

use crate::{Error, Result};

/// One image's patch grid: frames, rows, columns (in patches, before merging).
pub type Grid = [usize; 3];

/// Text positions (t, h, w) of every prompt token and the offset decode steps add to
/// their cache position (`rope_deltas`).
pub fn rope_index(ids: &[u32], image_token: u32, grids: &[Grid], merge: usize) -> Result<(Vec<[u32; 3]>, i64)> {
    let mut out = Vec::with_capacity(ids.len());
    let mut pos = 0usize;
    let mut images = grids.iter();
    let mut i = 0;
    while i < ids.len() {
        if ids[i] != image_token {
            out.push([pos as u32; 3]);
            pos += 1;
            i += 1;
            continue;
        }
        let run = ids[i..].iter().take_while(|&&t| t == image_token).count();
        let &[t, h, w] = images.next().ok_or_else(|| {
            Error::Input(format!("more image-token runs in the prompt than images ({})", grids.len()))
        })?;
        let (lh, lw) = (h / merge, w / merge);
        if run != t * lh * lw {
            return Err(Error::Input(format!(
                "an image-token run of {run} tokens does not match its image grid {t}x{h}x{w} ({} tokens)",
                t * lh * lw
            )));
        }
        for ti in 0..t {
            for hi in 0..lh {
                for wi in 0..lw {
                    out.push([(pos + ti) as u32, (pos + hi) as u32, (pos + wi) as u32]);
                }
            }
        }
        pos += lh.max(lw);
        i += run;
    }
    if images.next().is_some() {
        return Err(Error::Input(format!("{} images but fewer image-token runs in the prompt", grids.len())));
    }
    let max = out.iter().flat_map(|p| p.iter()).copied().max().map_or(-1, |m| m as i64);
    Ok((out, max + 1 - ids.len() as i64))
}

/// (row, col) of every patch of every image, in the order the image processor emits them
/// (merge blocks of `merge x merge` patches, blocks in raster order, frames in turn).
pub fn patch_rows_cols(grids: &[Grid], merge: usize) -> Vec<[u32; 2]> {
    let mut out = Vec::new();
    for &[t, h, w] in grids {
        for _ in 0..t {
            for br in 0..h / merge {
                for bc in 0..w / merge {
                    for ir in 0..merge {
                        for ic in 0..merge {
                            out.push([(br * merge + ir) as u32, (bc * merge + ic) as u32]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Bilinear (align_corners) taps of each patch (at `rows_cols`, from [`patch_rows_cols`]) into a
/// `side x side` learned position table: four (index, weight) pairs per patch, as transformers'
/// interpolation computes them in f32.
pub fn pos_embed_taps(grids: &[Grid], rows_cols: &[[u32; 2]], side: usize) -> [(Vec<i32>, Vec<f32>); 4] {
    let axis = |i: u32, size: usize| -> [(usize, f32); 2] {
        let src = i as f32 * (side - 1) as f32 / (size.max(2) - 1) as f32;
        let fl = src.floor();
        let frac = src - fl;
        let f = fl as usize;
        [(f.min(side - 1), 1.0 - frac), ((f + 1).min(side - 1), frac)]
    };
    let mut taps: [(Vec<i32>, Vec<f32>); 4] = Default::default();
    let mut sizes = Vec::new();
    for &[t, h, w] in grids {
        sizes.extend(std::iter::repeat_n((h, w), t * h * w));
    }
    for (&[r, c], (h, w)) in rows_cols.iter().zip(sizes) {
        let (rt, ct) = (axis(r, h), axis(c, w));
        for (k, ((ri, rw), (ci, cw))) in
            [(rt[0], ct[0]), (rt[0], ct[1]), (rt[1], ct[0]), (rt[1], ct[1])].into_iter().enumerate()
        {
            taps[k].0.push((ri * side + ci) as i32);
            taps[k].1.push(rw * cw);
        }
    }
    taps
}

/// Additive mask letting each frame's patches attend only within that frame; None when the
/// request has a single frame (no mask needed).
pub fn vision_mask(grids: &[Grid]) -> Option<(usize, Vec<f32>)> {
    let mut blocks = Vec::new();
    for &[t, h, w] in grids {
        blocks.extend(std::iter::repeat_n(h * w, t));
    }
    if blocks.len() <= 1 {
        return None;
    }
    let n: usize = blocks.iter().sum();
    let mut m = vec![f32::NEG_INFINITY; n * n];
    let mut at = 0;
    for b in blocks {
        for i in at..at + b {
            m[i * n + at..i * n + at + b].fill(0.0);
        }
        at += b;
    }
    Some((n, m))
}

/// Additive causal mask for `t` new queries after `past` cached positions: `[t, past + t]`.
pub fn causal_mask(t: usize, past: usize) -> Vec<f32> {
    let s = past + t;
    (0..t * s).map(|i| if i % s > past + i / s { f32::NEG_INFINITY } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_index_follows_transformers_for_an_image_between_text() {
        // 2 text tokens, a 1x4x6 grid (2x3 merged tokens), 2 text tokens.
        let ids = [1, 2, 9, 9, 9, 9, 9, 9, 3, 4];
        let (p, delta) = rope_index(&ids, 9, &[[1, 4, 6]], 2).unwrap();
        assert_eq!(p[1], [1, 1, 1]);
        assert_eq!(&p[2..5], &[[2, 2, 2], [2, 2, 3], [2, 2, 4]]);
        assert_eq!(p[5], [2, 3, 2]);
        // After the image, text resumes at start + max(h, w) / merge = 2 + 3.
        assert_eq!(p[8], [5, 5, 5]);
        assert_eq!(delta, 7 - 10);
        assert!(rope_index(&ids, 9, &[], 2).is_err());
        assert!(rope_index(&ids, 9, &[[1, 4, 4]], 2).is_err());
        assert!(rope_index(&[1, 2], 9, &[[1, 4, 4]], 2).is_err());
    }

    #[test]
    fn patches_come_in_merge_blocks_and_taps_sum_to_one() {
        let rc = patch_rows_cols(&[[1, 4, 4]], 2);
        assert_eq!(&rc[..5], &[[0, 0], [0, 1], [1, 0], [1, 1], [0, 2]]);
        let taps = pos_embed_taps(&[[1, 4, 6]], &patch_rows_cols(&[[1, 4, 6]], 2), 4);
        for i in 0..24 {
            let s: f32 = taps.iter().map(|t| t.1[i]).sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        // The first patch sits on the table's corner.
        assert_eq!((taps[0].0[0], taps[0].1[0]), (0, 1.0));
    }

    #[test]
    fn masks() {
        assert_eq!(causal_mask(2, 1), vec![0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0]);
        assert!(vision_mask(&[[1, 2, 2]]).is_none());
        let (n, m) = vision_mask(&[[1, 2, 2], [1, 2, 4]]).unwrap();
        assert_eq!(n, 12);
        assert_eq!(m[0], 0.0);
        assert_eq!(m[4], f32::NEG_INFINITY);
        assert_eq!(m[4 * 12 + 11], 0.0);
    }
}
