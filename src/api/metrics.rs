//! The server's counters, gauges and latency histograms, written in Prometheus' text format
//! for `GET /metrics`. The engine thread and the HTTP handlers update them under one lock.

use std::fmt::Write;
use std::sync::Mutex;

/// A cumulative histogram with fixed upper bounds (seconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

const TTFT_BOUNDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const TPOT_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const E2E_BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Everything `/metrics` reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Requests that finished with an answer.
    pub completed: u64,
    /// Requests the engine failed.
    pub failed: u64,
    /// Requests whose client went away (or that a stop string ended early).
    pub cancelled: u64,
    /// Requests refused because the queue was full or the server was shutting down.
    pub rejected: u64,
    /// Requests refused as malformed.
    pub invalid: u64,
    /// Prompt tokens of requests handed to the engine.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generation_tokens: u64,
    /// Requests in the engine that have not produced a token yet.
    pub waiting: usize,
    /// Requests in the engine producing tokens.
    pub running: usize,
    /// KV cache blocks lent to sequences.
    pub kv_blocks_used: usize,
    /// KV cache blocks in all.
    pub kv_blocks_total: usize,
    /// Time to first token, from the request's arrival.
    pub ttft: Histogram,
    /// Time per output token after the first.
    pub tpot: Histogram,
    /// Arrival to last token.
    pub e2e: Histogram,
}

/// The shared metrics.
#[derive(Debug)]
pub struct Metrics(Mutex<Snapshot>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics(Mutex::new(Snapshot {
            completed: 0,
            failed: 0,
            cancelled: 0,
            rejected: 0,
            invalid: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            waiting: 0,
            running: 0,
            kv_blocks_used: 0,
            kv_blocks_total: 0,
            ttft: Histogram::new(TTFT_BOUNDS),
            tpot: Histogram::new(TPOT_BOUNDS),
            e2e: Histogram::new(E2E_BOUNDS),
        }))
    }
}

impl Metrics {
    /// Changes the metrics under the lock.
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        // A panic elsewhere while holding the lock leaves plain numbers: still worth reporting.
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A copy of the metrics.
    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let _ = writeln!(out, "# HELP lumen_requests_total Chat completion requests by outcome.");
        let _ = writeln!(out, "# TYPE lumen_requests_total counter");
        for (outcome, n) in [
            ("completed", s.completed),
            ("failed", s.failed),
            ("cancelled", s.cancelled),
            ("rejected", s.rejected),
            ("invalid", s.invalid),
        ] {
            let _ = writeln!(out, "lumen_requests_total{{outcome=\"{outcome}\"}} {n}");
        }
        let mut scalar = |name: &str, kind: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        scalar("lumen_prompt_tokens_total", "counter", "Prompt tokens handed to the engine.", s.prompt_tokens as f64);
        scalar("lumen_generation_tokens_total", "counter", "Tokens generated.", s.generation_tokens as f64);
        scalar("lumen_queue_depth", "gauge", "Requests waiting for their first token.", s.waiting as f64);
        scalar("lumen_requests_running", "gauge", "Requests producing tokens.", s.running as f64);
        scalar("lumen_kv_blocks_in_use", "gauge", "KV cache blocks lent to sequences.", s.kv_blocks_used as f64);
        scalar("lumen_kv_blocks_total", "gauge", "KV cache blocks in all.", s.kv_blocks_total as f64);
        s.ttft.write(&mut out, "lumen_time_to_first_token_seconds", "Arrival to first token.");
        s.tpot.write(&mut out, "lumen_time_per_output_token_seconds", "Mean time per output token after the first.");
        s.e2e.write(&mut out, "lumen_request_latency_seconds", "Arrival to last token.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_in_the_text_format() {
        let m = Metrics::default();
        m.update(|s| {
            s.ttft.observe(0.02);
            s.ttft.observe(3.0);
            s.kv_blocks_used = 5;
        });
        let text = m.render();
        assert!(text.contains("lumen_time_to_first_token_seconds_bucket{le=\"0.01\"} 0\n"));
        assert!(text.contains("lumen_time_to_first_token_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("lumen_time_to_first_token_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("lumen_time_to_first_token_seconds_count 2\n"));
        assert!(text.contains("lumen_kv_blocks_in_use 5\n"));
    }
}
