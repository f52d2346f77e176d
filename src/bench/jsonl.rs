//! Real samples from a JSONL file, one object per line:
//! `{"image": "imgs/1.jpg", "title": ..., "description": ..., "candidates": [...],
//! "ground_truth": ..., "brand"?: ..., "is_secondhand"?: ...}`, the image path relative to the
//! file. Errors name the file and line; images are decoded when a sample is prepared.

use super::dataset::{Sample, SampleImage};
use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    image: String,
    title: String,
    description: String,
    candidates: Vec<String>,
    ground_truth: String,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    is_secondhand: Option<bool>,
}

/// Loads every non-blank line of `path`.
pub fn load(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let origin = format!("{}:{}", path.display(), i + 1);
        out.push(parse_line(line, dir, &origin).map_err(|m| Error::Input(format!("{origin}: {m}")))?);
    }
    if out.is_empty() {
        return Err(Error::Input(format!("{}: no samples (expected one JSON object per line)", path.display())));
    }
    Ok(out)
}

fn parse_line(line: &str, dir: &Path, origin: &str) -> std::result::Result<Sample, String> {
    let l: Line = serde_json::from_str(line).map_err(|e| format!("not a sample: {e}"))?;
    if l.candidates.is_empty() {
        return Err("`candidates` is empty".into());
    }
    if l.ground_truth.trim().is_empty() {
        return Err("`ground_truth` is empty".into());
    }
    let image = dir.join(&l.image);
    if !image.is_file() {
        return Err(format!("image `{}` not found (looked for {})", l.image, image.display()));
    }
    Ok(Sample {
        origin: origin.to_string(),
        image: SampleImage::File(image),
        title: l.title,
        description: l.description,
        candidates: l.candidates,
        ground_truth: l.ground_truth,
        brand: l.brand,
        is_secondhand: l.is_secondhand,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory with an `a.png`, removed when dropped.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("lumen-jsonl-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.png"), b"not really a png").unwrap();
        Dir(d)
    }

    const GOOD: &str = r#"{"image": "a.png", "title": "T", "description": "D", "candidates": ["A > B", "A > C"], "ground_truth": "A > B"}"#;

    fn err(name: &str, text: &str) -> String {
        let d = dir(name);
        let f = d.0.join("s.jsonl");
        std::fs::write(&f, text).unwrap();
        load(&f).unwrap_err().to_string()
    }

    #[test]
    fn loads_samples_with_images_relative_to_the_file() {
        let d = dir("ok");
        let f = d.0.join("s.jsonl");
        std::fs::write(&f, format!("{GOOD}\n\n{}\n", GOOD.replace("\"T\"", "\"U\", \"brand\": \"X\""))).unwrap();
        let s = load(&f).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].image, SampleImage::File(d.0.join("a.png")));
        assert_eq!(s[1].title, "U");
        assert_eq!(s[1].brand.as_deref(), Some("X"));
        assert!(s[1].origin.ends_with("s.jsonl:3"), "{}", s[1].origin);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let e = err("missing", &format!("{GOOD}\n{}", GOOD.replace(r#""title": "T", "#, "")));
        assert!(e.contains("s.jsonl:2") && e.contains("missing field `title`"), "{e}");
        let e = err("notjson", &format!("{GOOD}\n{GOOD}\n{{oops"));
        assert!(e.contains("s.jsonl:3") && e.contains("not a sample"), "{e}");
        let e = err("noimage", &GOOD.replace("a.png", "gone.png"));
        assert!(e.contains("s.jsonl:1") && e.contains("gone.png") && e.contains("not found"), "{e}");
        let e = err("nocands", &GOOD.replace(r#"["A > B", "A > C"]"#, "[]"));
        assert!(e.contains("s.jsonl:1") && e.contains("candidates"), "{e}");
        let e = err("extra", &GOOD.replace("\"T\"", "\"T\", \"price\": 3"));
        assert!(e.contains("unknown field `price`"), "{e}");
        let e = err("empty", "\n  \n");
        assert!(e.contains("no samples"), "{e}");
        let e = load(Path::new("/nonexistent/lumen.jsonl")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/lumen.jsonl"), "{e}");
    }
}
