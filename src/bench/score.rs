//! Accuracy as MLPerf's Qwen3-VL evaluation computes it (`evaluation.py`): each answer parsed
//! strictly as the `ProductMetadata` JSON object; category hierarchical F1 (longest common
//! prefix of the ` > ` levels, micro-averaged); brand by fuzzy match; is_secondhand by F1.
//!
//! An unparseable answer scores zero: the reference replaces its category with a pad of as many
//! levels as the truth (0 common, the truth's length added to both denominators), its brand with
//! a pad, and its is_secondhand with a seeded coin flip.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

const SEPARATOR: &str = " > ";

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `A > B > C`.
    pub category: String,
    /// Brand.
    pub brand: String,
    /// Second-hand or not.
    pub is_secondhand: bool,
}

/// Parses an answer the way pydantic's `model_validate_json` does for the reference's schema:
/// the whole text one JSON object (surrounding whitespace only, so a ```json fence fails as it
/// does there), exactly the keys `category`, `brand` (strings) and `is_secondhand` (a boolean,
/// or pydantic's lax forms: 0/1, "true"/"false", "yes"/"no", "on"/"off", "t"/"f", "y"/"n").
pub fn parse_answer(text: &str) -> Option<Answer> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let obj = v.as_object()?;
    if obj.len() != 3 {
        return None;
    }
    let is_secondhand = match &obj.get("is_secondhand")? {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => match n.as_f64()? {
            0.0 => false,
            1.0 => true,
            _ => return None,
        },
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => false,
            "1" | "on" | "t" | "true" | "y" | "yes" => true,
            _ => return None,
        },
        _ => return None,
    };
    Some(Answer {
        category: obj.get("category")?.as_str()?.to_string(),
        brand: obj.get("brand")?.as_str()?.to_string(),
        is_secondhand,
    })
}

/// (common prefix levels, predicted levels, true levels) of one sample; levels are trimmed.
pub fn hierarchical_components(predicted: &str, truth: &str) -> (usize, usize, usize) {
    let p: Vec<&str> = predicted.split(SEPARATOR).map(str::trim).collect();
    let t: Vec<&str> = truth.split(SEPARATOR).map(str::trim).collect();
    let common = p.iter().zip(&t).take_while(|(a, b)| a == b).count();
    (common, p.len(), t.len())
}

/// Category hierarchical precision, recall and F1, micro-averaged over samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HierarchicalF1 {
    /// Σ common / Σ predicted levels.
    pub precision: f64,
    /// Σ common / Σ true levels.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub f1: f64,
}

/// Hierarchical F1 of (predicted, true) category pairs.
pub fn hierarchical_f1<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HierarchicalF1 {
    let (mut common, mut predicted, mut truth) = (0usize, 0usize, 0usize);
    for (p, t) in pairs {
        let (c, np, nt) = hierarchical_components(p, t);
        common += c;
        predicted += np;
        truth += nt;
    }
    let ratio = |a: usize, b: usize| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    let (precision, recall) = (ratio(common, predicted), ratio(common, truth));
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    HierarchicalF1 { precision, recall, f1 }
}

/// rapidfuzz's `fuzz.ratio`: 100 * (1 - indel distance / total length), over characters.
pub fn fuzz_ratio(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.is_empty() && b.is_empty() {
        return 100.0;
    }
    let mut row = vec![0usize; b.len() + 1];
    for x in &a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    let lcs = row[b.len()];
    100.0 * (2 * lcs) as f64 / (a.len() + b.len()) as f64
}

/// What one sample contributes: the answer's text and the truth.
#[derive(Debug, Clone)]
pub struct Scored<'a> {
    /// The model's answer.
    pub answer: &'a str,
    /// The true category.
    pub category: &'a str,
    /// The true brand, when known.
    pub brand: Option<&'a str>,
    /// The true is_secondhand, when known.
    pub is_secondhand: Option<bool>,
}

/// The accuracy of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    /// Answers scored.
    pub samples: usize,
    /// Answers that were not the expected JSON.
    pub unparseable: usize,
    /// Category hierarchical F1 (the benchmark's accuracy metric).
    pub category: HierarchicalF1,
    /// Fraction of brands within fuzzy ratio > 90 of the truth (samples with a known brand).
    pub brand: Option<f64>,
    /// F1 of is_secondhand, true the positive class (samples where it is known).
    pub is_secondhand_f1: Option<f64>,
}

/// Scores answers; `seed` drives the coin flips that stand in for unparseable is_secondhand.
pub fn score(items: &[Scored], seed: u64) -> Accuracy {
    let mut rng = StdRng::seed_from_u64(seed);
    let parsed: Vec<Option<Answer>> = items.iter().map(|s| parse_answer(s.answer)).collect();
    let pad = |truth: &str| vec!["<|__PRED_CATEGORY_PAD__|>"; truth.split(SEPARATOR).count()].join(SEPARATOR);
    let cats: Vec<(String, &str)> = items
        .iter()
        .zip(&parsed)
        .map(|(s, p)| (p.as_ref().map_or_else(|| pad(s.category), |a| a.category.clone()), s.category))
        .collect();
    let brands: Vec<bool> = items
        .iter()
        .zip(&parsed)
        .filter_map(|(s, p)| {
            let pred = p.as_ref().map_or("<|__PRED_BRAND_PAD__|>", |a| a.brand.as_str());
            Some(fuzz_ratio(&s.brand?.trim().to_lowercase(), &pred.trim().to_lowercase()) > 90.0)
        })
        .collect();
    let (mut tp, mut fp, mut fn_, mut known) = (0usize, 0usize, 0usize, 0usize);
    for (s, p) in items.iter().zip(&parsed) {
        let Some(truth) = s.is_secondhand else { continue };
        known += 1;
        let pred = p.as_ref().map_or_else(|| rng.random_bool(0.5), |a| a.is_secondhand);
        match (pred, truth) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denom = 2 * tp + fp + fn_;
    Accuracy {
        samples: items.len(),
        unparseable: parsed.iter().filter(|p| p.is_none()).count(),
        category: hierarchical_f1(cats.iter().map(|(p, t)| (p.as_str(), *t))),
        brand: (!brands.is_empty()).then(|| brands.iter().filter(|b| **b).count() as f64 / brands.len() as f64),
        is_secondhand_f1: (known > 0).then(|| if denom == 0 { 0.0 } else { 2.0 * tp as f64 / denom as f64 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn components_are_the_longest_common_prefix() {
        assert_eq!(hierarchical_components("A > B > C", "A > B > C"), (3, 3, 3));
        assert_eq!(hierarchical_components("A > X > C", "A > B > C"), (1, 3, 3));
        // A match after a mismatch does not count.
        assert_eq!(hierarchical_components("X > B > C", "A > B > C"), (0, 3, 3));
        assert_eq!(hierarchical_components("A > B", "A > B > C > D"), (2, 2, 4));
        assert_eq!(hierarchical_components(" A >  B ", "A > B"), (2, 2, 2));
        // Python's "".split(" > ") is [""]: one empty level.
        assert_eq!(hierarchical_components("", "A"), (0, 1, 1));
        // Only " > " separates levels.
        assert_eq!(hierarchical_components("A>B", "A > B"), (0, 1, 2));
    }

    #[test]
    fn f1_is_micro_averaged_over_levels() {
        // Sample 1: 2 common of 2 predicted, 3 true. Sample 2: 1 common of 4 predicted, 2 true.
        // P = 3/6, R = 3/5, F1 = 2 * 0.5 * 0.6 / 1.1 = 6/11.
        let s = hierarchical_f1([("A > B", "A > B > C"), ("D > E > F > G", "D > X")]);
        assert!(close(s.precision, 0.5) && close(s.recall, 0.6) && close(s.f1, 6.0 / 11.0), "{s:?}");
        let s = hierarchical_f1([("A", "B")]);
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        assert_eq!(hierarchical_f1([]).f1, 0.0);
    }

    #[test]
    fn answers_parse_as_strictly_as_pydantic() {
        let ok = r#" {"category": "A > B", "brand": "Acme", "is_secondhand": false} "#;
        let a = parse_answer(ok).unwrap();
        assert_eq!((a.category.as_str(), a.brand.as_str(), a.is_secondhand), ("A > B", "Acme", false));
        assert!(parse_answer(&ok.replace("false", "\"yes\"")).unwrap().is_secondhand);
        assert!(parse_answer(&ok.replace("false", "1")).unwrap().is_secondhand);
        for bad in [
            format!("```json\n{ok}\n```"),
            format!("Sure! {ok}"),
            ok.replace("false", "\"maybe\""),
            ok.replace("false", "2"),
            ok.replace("\"Acme\"", "7"),
            ok.replace(", \"brand\": \"Acme\"", ""),
            ok.replace("false}", "false, \"price\": 1}"),
            "[1, 2]".into(),
            "".into(),
        ] {
            assert_eq!(parse_answer(&bad), None, "{bad}");
        }
    }

    #[test]
    fn unparseable_answers_count_the_truth_length_and_score_zero() {
        let good = r#"{"category": "A > B > C", "brand": "Acme", "is_secondhand": true}"#;
        let items = [
            Scored { answer: good, category: "A > B > C", brand: Some("acme "), is_secondhand: Some(true) },
            Scored { answer: "no idea", category: "D > E", brand: Some("Zed"), is_secondhand: None },
        ];
        let s = score(&items, 0);
        // 3 common; predicted 3 + 2 (pad), true 3 + 2: P = R = F1 = 3/5.
        assert_eq!((s.samples, s.unparseable), (2, 1));
        assert!(close(s.category.f1, 0.6) && close(s.category.precision, 0.6), "{s:?}");
        assert_eq!(s.brand, Some(0.5));
        assert_eq!(s.is_secondhand_f1, Some(1.0));
    }

    #[test]
    fn fuzz_ratio_matches_rapidfuzz() {
        assert_eq!(fuzz_ratio("", ""), 100.0);
        assert_eq!(fuzz_ratio("abc", "abc"), 100.0);
        // LCS("adidas", "adodas") = 5: 100 * 10 / 12.
        assert!(close(fuzz_ratio("adidas", "adodas"), 1000.0 / 12.0));
        assert_eq!(fuzz_ratio("abc", ""), 0.0);
    }
}
