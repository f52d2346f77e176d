//! The load generator: issues prepared requests to any [`Serve`] engine as MLPerf's
//! scenarios do and records when each was issued, produced its first token and finished.
//! Offline submits everything at once; Server issues at Poisson arrival times (wall clock),
//! stepping the engine while anything is pending and sleeping when it is idle.

use crate::engine::sampler::SamplingOptions;
use crate::engine::serve::{Event, Request, Serve};
use crate::model::qwen3_vl::PrefillInputs;
use crate::{Error, Result};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// One prepared sample: its model inputs, or why they could not be made (the request then
/// fails alone when its turn comes).
#[derive(Debug, Clone)]
pub struct Job {
    /// Index of the sample.
    pub sample: usize,
    /// The prompt, or the preparation error.
    pub inputs: std::result::Result<PrefillInputs, String>,
}

/// How every request is answered.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// New tokens at most.
    pub max_new_tokens: usize,
    /// Tokens that end an answer.
    pub stop: Vec<u32>,
    /// Sampling (greedy by default).
    pub sampling: SamplingOptions,
}

/// What happened to one request. Times are seconds from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Index of the sample.
    pub sample: usize,
    /// Prompt tokens (0 when the sample could not be prepared).
    pub prompt_tokens: usize,
    /// When the request was due (its Poisson arrival; 0 offline). Latencies count from here,
    /// as LoadGen's do, so an engine that is busy when a request arrives pays for it.
    pub scheduled: f64,
    /// When it was handed to the engine.
    pub issued: f64,
    /// When its first token came back.
    pub first_token: Option<f64>,
    /// When it finished (or failed).
    pub done: Option<f64>,
    /// Generated tokens.
    pub tokens: Vec<u32>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Which scenario a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// All requests at once.
    Offline,
    /// Poisson arrivals.
    Server,
}

impl Scenario {
    /// `offline` or `server`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Offline => "offline",
            Scenario::Server => "server",
        }
    }
}

/// One run of a scenario.
#[derive(Debug, Clone)]
pub struct Run {
    /// The scenario.
    pub scenario: Scenario,
    /// The Poisson rate (server).
    pub offered_qps: Option<f64>,
    /// One record per job, in job order.
    pub records: Vec<Record>,
}

/// Arrival times (seconds from 0) of `n` requests at `qps` per second: cumulative sums of
/// seeded exponential gaps (inverse transform of uniform draws).
pub fn poisson_arrivals(n: usize, qps: f64, seed: u64) -> Result<Vec<f64>> {
    if !(qps.is_finite() && qps > 0.0) {
        return Err(Error::Input(format!("--qps must be a positive number of queries per second, got {qps}")));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    Ok((0..n)
        .map(|_| {
            let u: f64 = rng.random();
            t += -(1.0 - u).ln() / qps;
            t
        })
        .collect())
}

/// Drives one run: hands job `k` to the engine at `due[k]` seconds, steps until all are done.
fn drive(engine: &mut dyn Serve, jobs: &[Job], params: &Params, due: &[f64], bar: &ProgressBar) -> Result<Vec<Record>> {
    let start = Instant::now();
    let now = || start.elapsed().as_secs_f64();
    let mut records: Vec<Record> = jobs
        .iter()
        .zip(due)
        .map(|(j, &t)| Record {
            sample: j.sample,
            prompt_tokens: j.inputs.as_ref().map_or(0, |p| p.ids.len()),
            scheduled: t,
            issued: t,
            first_token: None,
            done: None,
            tokens: Vec::new(),
            error: None,
        })
        .collect();
    let mut next = 0;
    let mut idle_steps = 0;
    loop {
        let t = now();
        while next < jobs.len() && due[next] <= t {
            let rec = &mut records[next];
            rec.issued = now();
            let failed = match &jobs[next].inputs {
                Err(e) => Some(e.clone()),
                Ok(prompt) => engine
                    .submit(Request {
                        id: next as u64,
                        prompt: prompt.clone(),
                        max_new_tokens: params.max_new_tokens,
                        stop: params.stop.clone(),
                        sampling: params.sampling.clone(),
                    })
                    .err()
                    .map(|e| e.to_string()),
            };
            if let Some(e) = failed {
                rec.error = Some(e);
                rec.done = Some(rec.issued);
                bar.inc(1);
            }
            next += 1;
        }
        if engine.pending() > 0 {
            let events = engine.step()?;
            let t = now();
            idle_steps = if events.is_empty() { idle_steps + 1 } else { 0 };
            if idle_steps > 10_000 {
                return Err(Error::Backend(format!(
                    "the engine ({}) made no progress in 10000 steps with {} requests pending",
                    engine.describe(),
                    engine.pending()
                )));
            }
            for ev in events {
                let (Event::Token { id, .. } | Event::Done { id, .. } | Event::Failed { id, .. }) = ev;
                let Some(rec) = records.get_mut(id as usize) else {
                    return Err(Error::Backend(format!("the engine answered request {id}, which was never issued")));
                };
                match ev {
                    Event::Token { token, .. } => {
                        rec.first_token.get_or_insert(t);
                        rec.tokens.push(token);
                    }
                    Event::Done { .. } => {
                        rec.done = Some(t);
                        bar.inc(1);
                    }
                    Event::Failed { error, .. } => {
                        rec.error = Some(error);
                        rec.done = Some(t);
                        bar.inc(1);
                    }
                }
            }
        } else if next < jobs.len() {
            std::thread::sleep(Duration::from_secs_f64((due[next] - now()).max(0.0)));
        } else {
            break;
        }
    }
    Ok(records)
}

/// Offline: every job submitted at time 0.
pub fn offline(engine: &mut dyn Serve, jobs: &[Job], params: &Params, bar: &ProgressBar) -> Result<Run> {
    let due = vec![0.0; jobs.len()];
    Ok(Run { scenario: Scenario::Offline, offered_qps: None, records: drive(engine, jobs, params, &due, bar)? })
}

/// Server: jobs issued at Poisson arrivals of rate `qps`.
pub fn server(
    engine: &mut dyn Serve,
    jobs: &[Job],
    params: &Params,
    qps: f64,
    seed: u64,
    bar: &ProgressBar,
) -> Result<Run> {
    let due = poisson_arrivals(jobs.len(), qps, seed)?;
    Ok(Run { scenario: Scenario::Server, offered_qps: Some(qps), records: drive(engine, jobs, params, &due, bar)? })
}

/// How to search for the highest Server rate that meets the latency bound.
#[derive(Debug, Clone)]
pub struct Search {
    /// The first rate tried.
    pub start_qps: f64,
    /// The p99 end-to-end latency a rate must stay within, seconds.
    pub latency_bound: f64,
    /// Most Server runs.
    pub max_runs: usize,
    /// Seed of the arrivals (the same for every rate, as LoadGen's schedule seed).
    pub seed: u64,
}

/// What the search found.
#[derive(Debug, Clone)]
pub struct MaxQps {
    /// The highest passing rate, if any passed.
    pub best: Option<f64>,
    /// Every run, with whether it passed.
    pub runs: Vec<(Run, bool)>,
}

/// Whether a Server run meets the bound: nothing failed and the p99 end-to-end latency is
/// within it.
pub fn passes(run: &Run, latency_bound: f64) -> bool {
    let lat = super::stats::e2e_latencies(&run.records);
    run.records.iter().all(|r| r.error.is_none())
        && super::stats::percentile(&lat, 99.0).is_some_and(|p| p <= latency_bound)
}

/// Doubles the rate while it passes (halves while it fails), then bisects between the highest
/// pass and the lowest failure until they are within 5% or `max_runs` runs are spent. Stops
/// early when even the fastest request of a run misses the bound: no rate can pass then.
pub fn find_max_qps(
    engine: &mut dyn Serve,
    jobs: &[Job],
    params: &Params,
    search: &Search,
    mut bar: impl FnMut(f64) -> ProgressBar,
) -> Result<MaxQps> {
    if !(search.latency_bound.is_finite() && search.latency_bound > 0.0) {
        return Err(Error::Input(format!(
            "--latency-bound must be a positive number of seconds, got {}",
            search.latency_bound
        )));
    }
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut q = search.start_qps;
    let mut runs = Vec::new();
    for _ in 0..search.max_runs.max(1) {
        let b = bar(q);
        let run = server(engine, jobs, params, q, search.seed, &b)?;
        b.finish_and_clear();
        let ok = passes(&run, search.latency_bound);
        let hopeless = super::stats::e2e_latencies(&run.records).iter().all(|l| *l > search.latency_bound);
        runs.push((run, ok));
        if ok {
            lo = Some(lo.map_or(q, |l: f64| l.max(q)));
        } else {
            hi = Some(hi.map_or(q, |h: f64| h.min(q)));
        }
        q = match (lo, hi) {
            (Some(l), None) => l * 2.0,
            (None, Some(_)) if hopeless => break,
            (None, Some(h)) => h / 2.0,
            (Some(l), Some(h)) if (h - l) <= 0.05 * h => break,
            (Some(l), Some(h)) => (l + h) / 2.0,
            (None, None) => break,
        };
    }
    Ok(MaxQps { best: lo, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_have_the_offered_rate() {
        for (qps, seed) in [(0.5, 1), (4.0, 2), (100.0, 3)] {
            let n = 20_000;
            let t = poisson_arrivals(n, qps, seed).unwrap();
            assert!(t.windows(2).all(|w| w[1] >= w[0]));
            let rate = n as f64 / t[n - 1];
            // The mean of n exponential gaps has relative sd 1/sqrt(n) = 0.7%; allow 3%.
            assert!((rate / qps - 1.0).abs() < 0.03, "qps {qps}: empirical {rate}");
            // Exponential gaps: sd equals the mean.
            let gaps: Vec<f64> = std::iter::once(t[0]).chain(t.windows(2).map(|w| w[1] - w[0])).collect();
            let mean = gaps.iter().sum::<f64>() / n as f64;
            let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            assert!((sd / mean - 1.0).abs() < 0.05, "qps {qps}: sd/mean {}", sd / mean);
        }
        assert_eq!(poisson_arrivals(50, 2.0, 9).unwrap(), poisson_arrivals(50, 2.0, 9).unwrap());
    }

    #[test]
    fn a_rate_that_is_not_positive_is_an_error() {
        for q in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(poisson_arrivals(3, q, 0).unwrap_err().to_string().contains("--qps"), "{q}");
        }
    }

    /// One request at a time, one token per step, each step taking `step` of wall time.
    struct Fake {
        queue: std::collections::VecDeque<(u64, usize)>,
        step: Duration,
    }

    impl Serve for Fake {
        fn submit(&mut self, req: Request) -> Result<()> {
            self.queue.push_back((req.id, req.max_new_tokens));
            Ok(())
        }
        fn step(&mut self) -> Result<Vec<Event>> {
            std::thread::sleep(self.step);
            let Some((id, left)) = self.queue.front_mut() else { return Ok(vec![]) };
            let id = *id;
            *left -= 1;
            let mut ev = vec![Event::Token { id, token: 7 }];
            if *left == 0 {
                self.queue.pop_front();
                ev.push(Event::Done { id, finish: crate::engine::serve::Finish::Length });
            }
            Ok(ev)
        }
        fn cancel(&mut self, id: u64) -> bool {
            let before = self.queue.len();
            self.queue.retain(|(i, _)| *i != id);
            self.queue.len() != before
        }
        fn pending(&self) -> usize {
            self.queue.len()
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn jobs(n: usize) -> Vec<Job> {
        (0..n).map(|i| Job { sample: i, inputs: Ok(PrefillInputs { ids: vec![1, 2, 3], images: vec![] }) }).collect()
    }

    #[test]
    fn offline_records_every_request_and_fails_unprepared_ones_alone() {
        let mut e = Fake { queue: Default::default(), step: Duration::from_millis(1) };
        let mut j = jobs(4);
        j[1].inputs = Err("synthetic #1: bad image".into());
        let p = Params { max_new_tokens: 3, ..Default::default() };
        let run = offline(&mut e, &j, &p, &ProgressBar::hidden()).unwrap();
        assert_eq!(run.records.len(), 4);
        assert_eq!(run.records[1].error.as_deref(), Some("synthetic #1: bad image"));
        for r in run.records.iter().filter(|r| r.sample != 1) {
            assert_eq!((r.tokens.len(), r.prompt_tokens, r.error.as_ref()), (3, 3, None));
            let (f, d) = (r.first_token.unwrap(), r.done.unwrap());
            assert!(0.0 <= r.issued && r.issued <= f && f <= d, "{r:?}");
        }
        // One request at a time: the last finishes after all nine steps.
        assert!(run.records[3].done.unwrap() >= 0.009);
    }

    #[test]
    fn the_search_brackets_the_rate_an_engine_sustains() {
        // Each request takes 4 ms (4 steps of 1 ms): about 250 requests/s at most.
        let mut e = Fake { queue: Default::default(), step: Duration::from_millis(1) };
        let p = Params { max_new_tokens: 4, ..Default::default() };
        let s = Search { start_qps: 20.0, latency_bound: 0.05, max_runs: 6, seed: 1 };
        let found = find_max_qps(&mut e, &jobs(30), &p, &s, |_| ProgressBar::hidden()).unwrap();
        assert!(found.runs.len() <= 6 && found.runs[0].1, "20 qps should pass");
        let best = found.best.unwrap();
        assert!((20.0..=400.0).contains(&best), "{best}");
        for (run, ok) in &found.runs {
            assert_eq!(*ok, passes(run, 0.05));
            assert!(!ok || run.offered_qps.unwrap() <= best);
        }
    }
}
