//! Samples shaped like the benchmark's Shopify product-catalogue task: a product image, title
//! and description, 8-9 candidate `A > B > C` categories (one the ground truth). Synthetic
//! samples come from a seed; real ones from a JSONL file (see [`super::jsonl`]).

use super::words::{BRANDS, DESCRIPTION_WORDS, HTML_WRAPPERS, TAXONOMY, TITLE_ADJECTIVES};
use crate::io::image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

/// Where a sample's image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleImage {
    /// Drawn procedurally from a seed when the sample is prepared (samples stay small).
    Synthetic {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Seed of the drawing.
        seed: u64,
    },
    /// A PNG or JPEG file, decoded when the sample is prepared.
    File(PathBuf),
}

/// One benchmark sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Where it came from, for error messages (`data.jsonl:3`, `synthetic #5`).
    pub origin: String,
    /// The product image.
    pub image: SampleImage,
    /// Product title.
    pub title: String,
    /// Product description (sometimes with HTML, as in the real data).
    pub description: String,
    /// Candidate categories, `A > B > C` paths.
    pub candidates: Vec<String>,
    /// The true category.
    pub ground_truth: String,
    /// The true brand, when known.
    pub brand: Option<String>,
    /// Whether the product is second-hand, when known.
    pub is_secondhand: Option<bool>,
}

/// A length drawn between `min` and `max` inclusive, skewed towards `min` (`min + (max -
/// min) * u^2` for uniform `u`): most product texts are short, a few long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    /// Shortest.
    pub min: usize,
    /// Longest.
    pub max: usize,
}

impl Lengths {
    /// Draws one length.
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        let (lo, hi) = (self.min.min(self.max), self.max.max(self.min));
        let u: f64 = rng.random();
        lo + ((hi - lo) as f64 * u * u).round() as usize
    }
}

/// The shapes of synthetic samples.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetConfig {
    /// The image's longer side in pixels (the aspect ratio is drawn between 1:2 and 2:1).
    pub image_side: Lengths,
    /// Words in a title.
    pub title_words: Lengths,
    /// Words in a description.
    pub description_words: Lengths,
    /// Fraction of descriptions wrapped in HTML markup.
    pub html_fraction: f64,
}

impl DatasetConfig {
    /// Sizes like the benchmark's: photos of 256 to 1024 pixels a side, descriptions of tens
    /// to hundreds of words, a third of them HTML.
    pub fn benchmark() -> Self {
        DatasetConfig {
            image_side: Lengths { min: 256, max: 1024 },
            title_words: Lengths { min: 4, max: 16 },
            description_words: Lengths { min: 20, max: 400 },
            html_fraction: 0.3,
        }
    }

    /// Small inputs for quick runs and tests: thumbnails and a sentence or two.
    pub fn small() -> Self {
        DatasetConfig {
            image_side: Lengths { min: 48, max: 160 },
            title_words: Lengths { min: 3, max: 8 },
            description_words: Lengths { min: 5, max: 30 },
            html_fraction: 0.3,
        }
    }

    /// A named preset: `benchmark` or `small`.
    pub fn preset(name: &str) -> crate::Result<Self> {
        match name {
            "benchmark" => Ok(Self::benchmark()),
            "small" => Ok(Self::small()),
            other => Err(crate::Error::Input(format!("unknown input shape `{other}`: expected benchmark or small"))),
        }
    }
}

/// `n` samples from `seed`; the same seed and config give the same samples.
pub fn synthetic(n: usize, seed: u64, config: &DatasetConfig) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|i| synthetic_one(i, &mut rng, config)).collect()
}

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A category path: a top level, a second level, a leaf, and sometimes a fourth level.
fn category(rng: &mut impl Rng) -> Vec<String> {
    let (top, subs) = pick(rng, TAXONOMY);
    let (mid, leaves) = pick(rng, subs);
    let mut path = vec![top.to_string(), mid.to_string(), pick(rng, leaves).to_string()];
    if rng.random_bool(0.3) {
        path.push(format!("{} {}", pick(rng, TITLE_ADJECTIVES), path[2]));
    }
    path
}

/// 8 or 9 distinct candidates around the truth: some share its first levels (the hard ones
/// a hierarchical score rewards partly), the rest come from anywhere.
fn candidates(rng: &mut impl Rng, truth: &[String]) -> Vec<String> {
    let n = rng.random_range(8..=9);
    let mut out = vec![truth.join(" > ")];
    let mut tries = 0;
    while out.len() < n && tries < 1000 {
        tries += 1;
        let mut c = category(rng);
        let shared = rng.random_range(0..truth.len().min(3));
        if rng.random_bool(0.5) {
            c.splice(..shared.min(c.len()), truth[..shared].iter().cloned());
        }
        let c = c.join(" > ");
        if !out.contains(&c) {
            out.push(c);
        }
    }
    // The truth is not always first.
    let at = rng.random_range(0..out.len());
    out.swap(0, at);
    out
}

fn words(rng: &mut impl Rng, n: usize) -> Vec<&'static str> {
    (0..n).map(|_| *pick(rng, DESCRIPTION_WORDS)).collect()
}

fn synthetic_one(index: usize, rng: &mut StdRng, config: &DatasetConfig) -> Sample {
    let truth = category(rng);
    let brand = pick(rng, BRANDS).to_string();
    let is_secondhand = rng.random_bool(0.1);
    let leaf = truth.last().cloned().unwrap_or_default();

    let title_len = config.title_words.draw(rng);
    let mut title = vec![brand.clone(), pick(rng, TITLE_ADJECTIVES).to_string(), leaf.clone()];
    title.extend(words(rng, title_len.saturating_sub(3)).into_iter().map(str::to_string));
    if is_secondhand {
        title.push("(pre-owned)".into());
    }

    let n_words = config.description_words.draw(rng);
    let mut description = words(rng, n_words).join(" ");
    if let Some(first) = description.get(..1) {
        description.replace_range(..1, &first.to_uppercase());
    }
    description.push('.');
    if rng.random_bool(config.html_fraction.clamp(0.0, 1.0)) {
        let (open, close) = pick(rng, HTML_WRAPPERS);
        description = format!("{open}{description}{close}");
    }

    let long = config.image_side.draw(rng).max(1);
    let aspect = 2f64.powf(rng.random_range(-1.0..=1.0));
    let short = ((long as f64 / aspect.max(1.0 / aspect)).round() as usize).max(1);
    let (width, height) = if aspect >= 1.0 { (long, short) } else { (short, long) };

    Sample {
        origin: format!("synthetic #{index}"),
        image: SampleImage::Synthetic { width, height, seed: rng.random() },
        title: title.join(" "),
        description,
        candidates: candidates(rng, &truth),
        ground_truth: truth.join(" > "),
        brand: Some(brand),
        is_secondhand: Some(is_secondhand),
    }
}

/// Draws a product shot: a two-colour gradient background at a random angle with a few
/// solid rectangles and ellipses on it.
pub fn draw_image(width: usize, height: usize, seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    let colour = |rng: &mut StdRng| -> [f32; 3] { [0; 3].map(|_| rng.random::<f32>() * 255.0) };
    let (a, b) = (colour(&mut rng), colour(&mut rng));
    let shapes: Vec<([f32; 3], bool, [f32; 4])> = (0..1 + (seed % 3) as usize)
        .map(|_| {
            let c = colour(&mut rng);
            let g = [0.0f32; 4].map(|_| rng.random::<f32>());
            (c, rng.random_bool(0.5), g)
        })
        .collect();
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (dx, dy) = (angle.cos(), angle.sin());
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let fy = (y as f32 + 0.5) / height as f32;
        for x in 0..width {
            let fx = (x as f32 + 0.5) / width as f32;
            let t = (((fx - 0.5) * dx + (fy - 0.5) * dy) * std::f32::consts::FRAC_1_SQRT_2 + 0.5).clamp(0.0, 1.0);
            let mut px = [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t);
            for (c, ellipse, g) in &shapes {
                // g: centre x, centre y, half width, half height (fractions of the image).
                let (cx, cy, hw, hh) = (0.2 + 0.6 * g[0], 0.2 + 0.6 * g[1], 0.1 + 0.25 * g[2], 0.1 + 0.25 * g[3]);
                let (u, v) = ((fx - cx) / hw, (fy - cy) / hh);
                let inside = if *ellipse { u * u + v * v <= 1.0 } else { u.abs() <= 1.0 && v.abs() <= 1.0 };
                if inside {
                    px = *c;
                }
            }
            data.extend(px.map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    RgbImage { width, height, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_samples_and_another_seed_others() {
        let c = DatasetConfig::benchmark();
        assert_eq!(synthetic(20, 7, &c), synthetic(20, 7, &c));
        assert_ne!(synthetic(20, 7, &c), synthetic(20, 8, &c));
        let SampleImage::Synthetic { width, height, seed } = synthetic(1, 3, &c)[0].image else {
            panic!("synthetic image expected")
        };
        let img = draw_image(width, height, seed);
        assert_eq!((img.width, img.height, img.data.len()), (width, height, width * height * 3));
        assert_eq!(img, draw_image(width, height, seed));
        assert_ne!(img, draw_image(width, height, seed + 1));
    }

    #[test]
    fn synthetic_samples_have_the_benchmark_shape() {
        let c = DatasetConfig::benchmark();
        for s in synthetic(200, 1, &c) {
            assert!((8..=9).contains(&s.candidates.len()), "{}", s.candidates.len());
            assert_eq!(s.candidates.iter().filter(|x| **x == s.ground_truth).count(), 1);
            let mut uniq = s.candidates.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), s.candidates.len());
            assert!(s.candidates.iter().all(|x| (3..=4).contains(&x.split(" > ").count())));
            let SampleImage::Synthetic { width, height, .. } = s.image else { panic!() };
            let (long, short) = (width.max(height), width.min(height));
            assert!((256..=1024).contains(&long) && short * 2 >= long - 1, "{width}x{height}");
            assert!(!s.title.is_empty() && !s.description.is_empty());
        }
    }

    #[test]
    fn lengths_stay_in_range_and_lean_short() {
        let mut rng = StdRng::seed_from_u64(0);
        let l = Lengths { min: 10, max: 110 };
        let v: Vec<usize> = (0..10_000).map(|_| l.draw(&mut rng)).collect();
        assert!(v.iter().all(|x| (10..=110).contains(x)));
        let mean = v.iter().sum::<usize>() as f64 / v.len() as f64;
        // E[u^2] = 1/3.
        assert!((mean - (10.0 + 100.0 / 3.0)).abs() < 2.0, "{mean}");
    }
}
