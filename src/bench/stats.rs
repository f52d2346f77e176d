//! Figures of a run: throughput, latency percentiles (end to end, to the first token, per
//! output token) and counts, as one serialisable summary per (backend, scenario).

use super::load::{Record, Run};
use super::score::Accuracy;
use serde::Serialize;

/// The `p`-th percentile (0 < p <= 100) of `values` by the nearest-rank rule: the smallest
/// value with at least p% of the values at or below it, i.e. the `ceil(p/100 * n)`-th smallest.
/// No interpolation, so it is always a measured value, and p99 of fewer than 100 values is the
/// maximum (the conservative reading for a latency bound). None when `values` is empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// p50, p90, p99 and the mean of a set of values (all None when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Percentiles {
    /// Values summarised.
    pub n: usize,
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Percentiles {
    /// Summarises `values`.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        Percentiles {
            n,
            mean: (n > 0).then(|| values.iter().sum::<f64>() / n as f64),
            p50: percentile(values, 50.0),
            p90: percentile(values, 90.0),
            p99: percentile(values, 99.0),
        }
    }
}

fn ok(records: &[Record]) -> impl Iterator<Item = &Record> {
    records.iter().filter(|r| r.error.is_none() && r.done.is_some())
}

/// End-to-end latencies (completion minus scheduled arrival) of the requests that succeeded.
pub fn e2e_latencies(records: &[Record]) -> Vec<f64> {
    ok(records).filter_map(|r| Some(r.done? - r.scheduled)).collect()
}

/// The summary of one run on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `cpu`, `wgpu`, `cuda`.
    pub backend: String,
    /// The device's name.
    pub device: String,
    /// The engine's description.
    pub engine: String,
    /// `offline` or `server`.
    pub scenario: String,
    /// The Poisson rate (server).
    pub offered_qps: Option<f64>,
    /// Requests issued.
    pub samples: usize,
    /// Requests that finished.
    pub completed: usize,
    /// Requests that failed.
    pub failed: usize,
    /// From the start of the run to the last completion, seconds.
    pub duration_s: f64,
    /// Completed requests per second of `duration_s` (offline: samples/s; server: achieved
    /// queries/s).
    pub samples_per_s: f64,
    /// Prompt tokens of all requests.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub output_tokens: usize,
    /// Generated tokens per second of `duration_s`.
    pub output_tokens_per_s: f64,
    /// Completion minus scheduled arrival, seconds.
    pub latency_s: Percentiles,
    /// First token minus scheduled arrival, seconds.
    pub ttft_s: Percentiles,
    /// (completion - first token) / (tokens - 1), seconds, for answers of two tokens or more.
    pub tpot_s: Percentiles,
    /// Answer accuracy, when asked for.
    pub accuracy: Option<Accuracy>,
    /// The first few distinct failure messages.
    pub errors: Vec<String>,
}

impl Summary {
    /// Summarises a run.
    pub fn of(run: &Run, backend: &str, device: &str, engine: &str) -> Self {
        let r = &run.records;
        let duration = r.iter().filter_map(|x| x.done).fold(0.0, f64::max);
        let per_s = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
        let completed = ok(r).count();
        let output_tokens: usize = r.iter().map(|x| x.tokens.len()).sum();
        let ttft: Vec<f64> = ok(r).filter_map(|x| Some(x.first_token? - x.scheduled)).collect();
        let tpot: Vec<f64> = ok(r)
            .filter(|x| x.tokens.len() > 1)
            .filter_map(|x| Some((x.done? - x.first_token?) / (x.tokens.len() - 1) as f64))
            .collect();
        let mut errors: Vec<String> = Vec::new();
        for e in r.iter().filter_map(|x| x.error.as_ref()) {
            if errors.len() < 5 && !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        Summary {
            backend: backend.into(),
            device: device.into(),
            engine: engine.into(),
            scenario: run.scenario.name().into(),
            offered_qps: run.offered_qps,
            samples: r.len(),
            completed,
            failed: r.len() - completed,
            duration_s: duration,
            samples_per_s: per_s(completed as f64),
            prompt_tokens: r.iter().map(|x| x.prompt_tokens).sum(),
            output_tokens,
            output_tokens_per_s: per_s(output_tokens as f64),
            latency_s: Percentiles::of(&e2e_latencies(r)),
            ttft_s: Percentiles::of(&ttft),
            tpot_s: Percentiles::of(&tpot),
            accuracy: None,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::Scenario;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 91.0), Some(10.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&v, 100.0), Some(10.0));
        assert_eq!(percentile(&v, 10.0), Some(1.0));
        assert_eq!(percentile(&v, 0.5), Some(1.0));
        let h: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&h, 99.0), Some(198.0));
        assert_eq!(percentile(&h, 50.0), Some(100.0));
        assert_eq!(percentile(&[3.5], 99.0), Some(3.5));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&v, 0.0), None);
        let p = Percentiles::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((p.n, p.mean, p.p50, p.p90, p.p99), (4, Some(2.5), Some(2.0), Some(4.0), Some(4.0)));
    }

    #[test]
    fn a_summary_counts_failures_and_times_from_the_scheduled_arrival() {
        let rec = |scheduled: f64, first: f64, done: f64, n: usize| Record {
            sample: 0,
            prompt_tokens: 10,
            scheduled,
            issued: scheduled,
            first_token: Some(first),
            done: Some(done),
            tokens: vec![1; n],
            error: None,
        };
        let mut bad = rec(0.5, 0.0, 0.5, 0);
        bad.first_token = None;
        bad.error = Some("boom".into());
        let run = Run {
            scenario: Scenario::Server,
            offered_qps: Some(2.0),
            records: vec![rec(0.0, 1.0, 2.0, 5), rec(1.0, 2.5, 4.0, 4), bad],
        };
        let s = Summary::of(&run, "cpu", "host", "sequential");
        assert_eq!((s.samples, s.completed, s.failed, s.output_tokens, s.prompt_tokens), (3, 2, 1, 9, 30));
        assert_eq!(s.duration_s, 4.0);
        assert_eq!(s.samples_per_s, 0.5);
        assert_eq!(s.latency_s.p50, Some(2.0));
        assert_eq!(s.latency_s.p99, Some(3.0));
        assert_eq!(s.ttft_s.p99, Some(1.5));
        assert_eq!(s.tpot_s.p50, Some(0.25));
        assert_eq!(s.tpot_s.p99, Some(0.5));
        assert_eq!(s.errors, vec!["boom".to_string()]);
    }
}
