//! Picking the next token from logits: greedy, or seeded temperature / top-k / top-p sampling.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches this (1 = all).
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions { temperature: 0.0, top_p: 1.0, top_k: 0, seed: 0 }
    }
}

/// A sampler with its random state.
pub struct Sampler {
    opts: SamplingOptions,
    rng: StdRng,
}

/// Index of the largest value (the first of equal ones).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    /// A sampler; errors on options outside their ranges.
    pub fn new(opts: SamplingOptions) -> crate::Result<Self> {
        if !(opts.temperature >= 0.0 && opts.temperature.is_finite()) {
            return Err(crate::Error::Input(format!("temperature {} must be a finite number >= 0", opts.temperature)));
        }
        if !(opts.top_p > 0.0 && opts.top_p <= 1.0) {
            return Err(crate::Error::Input(format!("top_p {} must be in (0, 1]", opts.top_p)));
        }
        let rng = StdRng::seed_from_u64(opts.seed);
        Ok(Sampler { opts, rng })
    }

    /// The next token.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.opts.temperature == 0.0 || self.opts.top_k == 1 {
            return argmax(logits);
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.opts.top_k > 0 {
            order.truncate(self.opts.top_k);
        }
        let max = logits[order[0]];
        let mut probs: Vec<f64> =
            order.iter().map(|&i| (((logits[i] - max) / self.opts.temperature) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        let mut keep = probs.len();
        let mut acc = 0.0;
        for (j, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= self.opts.top_p as f64 {
                keep = j + 1;
                break;
            }
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut r = self.rng.random::<f64>() * mass;
        for (j, p) in probs[..keep].iter().enumerate() {
            if r < *p {
                return order[j] as u32;
            }
            r -= p;
        }
        order[keep - 1] as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplingOptions::default()).unwrap();
        assert_eq!(s.pick(&logits), 1);
        let opts = SamplingOptions { temperature: 1.0, top_k: 2, top_p: 1.0, seed: 7 };
        let picks: Vec<u32> = {
            let mut s = Sampler::new(opts.clone()).unwrap();
            (0..50).map(|_| s.pick(&logits)).collect()
        };
        assert!(picks.iter().all(|&p| p == 1 || p == 2), "top-k 2 keeps two tokens");
        assert!(picks.contains(&1) && picks.contains(&2));
        let mut again = Sampler::new(opts).unwrap();
        assert_eq!(picks, (0..50).map(|_| again.pick(&logits)).collect::<Vec<_>>(), "same seed, same tokens");
        let mut nucleus = Sampler::new(SamplingOptions { temperature: 1.0, top_p: 0.3, top_k: 0, seed: 1 }).unwrap();
        assert!((0..20).all(|_| nucleus.pick(&logits) == 1), "top-p 0.3 keeps only the most likely token");
        assert!(Sampler::new(SamplingOptions { temperature: -1.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplingOptions { top_p: 0.0, ..Default::default() }).is_err());
    }
}
