//! The results of a benchmark invocation: one JSON document (every backend's summaries and
//! Server load points) and a terminal table with the backends side by side.

use super::stats::{Percentiles, Summary};
use serde::Serialize;

/// One Server run's position on the latency-load curve.
#[derive(Debug, Clone, Serialize)]
pub struct LoadPoint {
    /// The Poisson rate offered.
    pub offered_qps: f64,
    /// Completed requests per second.
    pub achieved_qps: f64,
    /// Whether nothing failed and the p99 latency met the bound.
    pub passed: bool,
    /// End-to-end latency, seconds.
    pub latency_s: Percentiles,
}

/// Everything measured on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct BackendResult {
    /// `cpu`, `wgpu`, `cuda`.
    pub backend: String,
    /// The device.
    pub device: String,
    /// The engine's description.
    pub engine: String,
    /// One summary per scenario run (the Server one at `--qps`, or at the highest passing
    /// rate with `--find-max-qps`).
    pub summaries: Vec<Summary>,
    /// With `--find-max-qps`: the highest rate that met the bound (None: none did).
    pub max_qps: Option<f64>,
    /// Every Server run, by offered rate.
    pub load_points: Vec<LoadPoint>,
}

/// The whole invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// lumen's version.
    pub lumen: String,
    /// The model (`synthetic tiny`, a directory).
    pub model: String,
    /// The samples (`synthetic small, seed 0`, a JSONL path).
    pub dataset: String,
    /// Requests per scenario run.
    pub samples: usize,
    /// New tokens at most per answer.
    pub max_new_tokens: usize,
    /// Seed of the dataset and the arrivals.
    pub seed: u64,
    /// Sequences the engine may batch.
    pub max_seqs: usize,
    /// The Server latency bound, seconds.
    pub latency_bound_s: f64,
    /// One entry per backend, in the order run.
    pub backends: Vec<BackendResult>,
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.decimals$}"))
}

fn triple(p: &Percentiles, scale: f64, decimals: usize) -> String {
    let f = |v: Option<f64>| num(v.map(|x| x * scale), decimals);
    format!("{} / {} / {}", f(p.p50), f(p.p90), f(p.p99))
}

impl Report {
    /// The table: a row per figure, a column per backend.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let col = |f: &dyn Fn(&BackendResult) -> String| self.backends.iter().map(f).collect::<Vec<_>>();
        rows.push(("".into(), col(&|b| b.backend.clone())));
        rows.push(("device".into(), col(&|b| b.device.clone())));
        let find = |b: &BackendResult, s: &str| b.summaries.iter().find(|x| x.scenario == s).cloned();
        for scenario in ["offline", "server"] {
            if self.backends.iter().all(|b| find(b, scenario).is_none()) {
                continue;
            }
            let get = |f: &dyn Fn(&Summary) -> String| col(&|b| find(b, scenario).map_or("-".into(), |s| f(&s)));
            rows.push((format!("{}:", if scenario == "offline" { "Offline" } else { "Server" }), vec![]));
            if scenario == "server" {
                rows.push(("  offered queries/s".into(), get(&|s| num(s.offered_qps, 3))));
                rows.push(("  achieved queries/s".into(), get(&|s| format!("{:.3}", s.samples_per_s))));
            } else {
                rows.push(("  samples/s".into(), get(&|s| format!("{:.3}", s.samples_per_s))));
            }
            rows.push(("  output tokens/s".into(), get(&|s| format!("{:.1}", s.output_tokens_per_s))));
            rows.push(("  completed / failed".into(), get(&|s| format!("{} / {}", s.completed, s.failed))));
            rows.push(("  latency p50/p90/p99 s".into(), get(&|s| triple(&s.latency_s, 1.0, 2))));
            rows.push(("  TTFT p50/p90/p99 s".into(), get(&|s| triple(&s.ttft_s, 1.0, 2))));
            rows.push(("  TPOT p50/p90/p99 ms".into(), get(&|s| triple(&s.tpot_s, 1e3, 1))));
            if self.backends.iter().any(|b| find(b, scenario).is_some_and(|s| s.accuracy.is_some())) {
                rows.push((
                    "  category hF1".into(),
                    get(&|s| s.accuracy.as_ref().map_or("-".into(), |a| format!("{:.4}", a.category.f1))),
                ));
                rows.push((
                    "  unparseable answers".into(),
                    get(&|s| s.accuracy.as_ref().map_or("-".into(), |a| format!("{} / {}", a.unparseable, a.samples))),
                ));
            }
        }
        if self.backends.iter().any(|b| b.load_points.len() > 1 || b.max_qps.is_some()) {
            rows.push((
                format!("max queries/s (p99 <= {} s)", self.latency_bound_s),
                col(&|b| b.max_qps.map_or("none passed".into(), |q| format!("{q:.3}"))),
            ));
        }
        let label_w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0) + 2;
        let widths: Vec<usize> = (0..self.backends.len())
            .map(|i| rows.iter().filter_map(|r| r.1.get(i)).map(|c| c.chars().count()).max().unwrap_or(0) + 3)
            .collect();
        let mut out = String::new();
        for (label, cells) in &rows {
            out.push_str(&format!("{label:<label_w$}"));
            for (c, w) in cells.iter().zip(&widths) {
                out.push_str(&format!("{c:>w$}"));
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        }
        format!(
            "{} on {} ({} samples, at most {} new tokens, engine: {})\n{out}",
            self.model,
            self.dataset,
            self.samples,
            self.max_new_tokens,
            self.backends.first().map_or("-", |b| b.engine.as_str())
        )
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
