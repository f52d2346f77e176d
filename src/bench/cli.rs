//! `lumen serve-bench`: prepares the samples once, then on each backend in turn loads the
//! model, warms it up, runs the Offline and/or Server scenarios through an engine, and prints
//! the table (optionally writing the JSON report and the latency plot).

use super::dataset::{synthetic, DatasetConfig};
use super::load::{self, Job, Params, Run, Search};
use super::report::{BackendResult, LoadPoint, Report};
use super::score::{score, Scored};
use super::stats::Summary;
use super::{jsonl, prompt};
use crate::backend::select;
use crate::engine::batch::{BatchOptions, Batched};
use crate::engine::serve::{Sequential, Serve};
use crate::engine::Session;
use crate::model::processor::Processor;
use crate::model::qwen3_vl::{PrefillInputs, Qwen3VL};
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// The tokenizer `--synthetic` models use when none is given (relative to the repository).
pub const DEFAULT_TOKENIZER: &str = "tests/data/qwen3-tokenizer";

/// Options of `lumen serve-bench` (the model options come from the caller).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// auto, cuda, wgpu or cpu; a comma list (cpu,wgpu) runs each in turn, side by side.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Requests per scenario run.
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    /// Most new tokens per answer (NVIDIA's submissions capped outputs at 150).
    #[arg(long, default_value_t = 150)]
    pub max_new_tokens: usize,
    /// Seed of the synthetic samples and of the Poisson arrivals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// offline (all requests at once), server (Poisson arrivals) or both.
    #[arg(long, default_value = "both", value_parser = ["offline", "server", "both"])]
    pub scenario: String,
    /// Server arrival rate, queries/s (default: half the Offline samples/s when Offline ran
    /// first, else 1); with --find-max-qps, the first rate tried.
    #[arg(long)]
    pub qps: Option<f64>,
    /// Search for the highest Server rate whose p99 latency meets --latency-bound.
    #[arg(long)]
    pub find_max_qps: bool,
    /// The Server p99 end-to-end latency bound, seconds (the benchmark's is 12).
    #[arg(long, default_value_t = 12.0)]
    pub latency_bound: f64,
    /// Most Server runs the search may take.
    #[arg(long, default_value_t = 8)]
    pub max_search_runs: usize,
    /// Score the answers (category hierarchical F1, brand, is_secondhand).
    #[arg(long)]
    pub accuracy: bool,
    /// Most sequences the engine keeps in flight. The batched engine takes it; the
    /// sequential one (one request at a time) ignores it.
    #[arg(long, default_value_t = 32)]
    pub max_seqs: usize,
    /// Real samples: a JSONL file of {image, title, description, candidates, ground_truth}
    /// (images relative to it), repeated in order when --samples asks for more.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Shapes of the synthetic samples: benchmark (photos, long descriptions) or small.
    #[arg(long, default_value = "benchmark")]
    pub inputs: String,
    /// Most new tokens per engine step (decode tokens plus prompt chunks).
    #[arg(long, default_value_t = 2048)]
    pub token_budget: usize,
    /// KV cache slots per block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// KV cache blocks (0: room for every sequence to reach 1,024 tokens).
    #[arg(long, default_value_t = 0)]
    pub kv_blocks: usize,
    /// Serve one request at a time with the plain sequential engine instead.
    #[arg(long)]
    pub sequential: bool,
    /// Measure an OpenAI-compatible server at this URL (`http://host:port`) instead of a local
    /// engine: no model is loaded, each sample goes as chat messages with its image inline.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write an SVG plot of latency percentiles against offered load here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// The engine the benchmark drives: the batching engine (continuous batching over a paged
/// KV cache) with the run's limits, or `Sequential` (one request at a time, no batching
/// machinery) when asked for.
pub fn engine<'s, 'b>(session: &'s mut Session<'b>, args: &BenchArgs) -> Result<Box<dyn Serve + 's>> {
    if args.sequential {
        return Ok(Box::new(Sequential::new(session)));
    }
    let opts = BatchOptions {
        max_seqs: args.max_seqs,
        token_budget: args.token_budget,
        block_size: args.block_size,
        kv_blocks: args.kv_blocks,
    };
    Ok(Box::new(Batched::new(session, opts)?))
}

fn check(args: &BenchArgs) -> Result<()> {
    let bad = |m: String| Err(Error::Input(m));
    if args.samples == 0 {
        return bad("--samples must be at least 1".into());
    }
    if let Some(q) = args.qps.filter(|q| !(q.is_finite() && *q > 0.0)) {
        return bad(format!("--qps must be a positive number of queries per second, got {q}"));
    }
    if !(args.latency_bound.is_finite() && args.latency_bound > 0.0) {
        return bad(format!("--latency-bound must be a positive number of seconds, got {}", args.latency_bound));
    }
    if args.max_seqs == 0 {
        return bad("--max-seqs must be at least 1".into());
    }
    if args.server.is_some() && args.accuracy {
        return bad("--accuracy needs the answers' tokens: it does not work with --server".into());
    }
    if args.find_max_qps && args.scenario == "offline" {
        return bad("--find-max-qps searches Server rates: use --scenario server or both".into());
    }
    Ok(())
}

fn bar(len: usize, prefix: String) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template("{prefix:>24} {bar:30} {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_prefix(prefix);
    b
}

/// The samples and their prepared prompts; a sample that cannot be prepared becomes a job
/// that fails alone.
fn samples(args: &BenchArgs) -> Result<(Vec<super::dataset::Sample>, String)> {
    Ok(match &args.data {
        Some(path) => {
            let all = jsonl::load(path)?;
            let n = all.len();
            ((0..args.samples).map(|i| all[i % n].clone()).collect(), format!("{} ({n} samples)", path.display()))
        }
        None => (
            synthetic(args.samples, args.seed, &DatasetConfig::preset(&args.inputs)?),
            format!("synthetic {} samples (seed {})", args.inputs, args.seed),
        ),
    })
}

fn jobs(args: &BenchArgs, processor: &Processor) -> Result<(Vec<super::dataset::Sample>, Vec<Job>, String)> {
    let (samples, what) = samples(args)?;
    let b = bar(samples.len(), "preparing prompts".into());
    let jobs: Vec<Job> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            b.inc(1);
            Job { sample: i, inputs: prompt::prepare(s, processor).map_err(|e| e.to_string()) }
        })
        .collect();
    b.finish_and_clear();
    let failed: Vec<&String> = jobs.iter().filter_map(|j| j.inputs.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        eprintln!("{} of {} samples could not be prepared and will fail (first: {first})", failed.len(), jobs.len());
    }
    Ok((samples, jobs, what))
}

fn summarise(run: &Run, r: &BackendResult, samples: &[super::dataset::Sample], proc: &Processor, acc: bool) -> Summary {
    let mut s = Summary::of(run, &r.backend, &r.device, &r.engine);
    if acc {
        let answers: Vec<String> =
            run.records.iter().map(|rec| proc.tokenizer.decode(&rec.tokens).unwrap_or_default()).collect();
        let items: Vec<Scored> = run
            .records
            .iter()
            .zip(&answers)
            .map(|(rec, a)| {
                let smp = &samples[rec.sample];
                Scored {
                    answer: a,
                    category: &smp.ground_truth,
                    brand: smp.brand.as_deref(),
                    is_secondhand: smp.is_secondhand,
                }
            })
            .collect();
        s.accuracy = Some(score(&items, 0));
    }
    s
}

fn point(run: &Run, passed: bool) -> LoadPoint {
    let s = Summary::of(run, "", "", "");
    LoadPoint {
        offered_qps: run.offered_qps.unwrap_or(0.0),
        achieved_qps: s.samples_per_s,
        passed,
        latency_s: s.latency_s,
    }
}

/// Warm-up, then the Offline and/or Server scenarios on one engine, into `result`;
/// `summarise` turns a run into its table row.
fn scenarios(
    args: &BenchArgs,
    name: &str,
    eng: &mut dyn Serve,
    jobs: &[Job],
    params: &Params,
    result: &mut BackendResult,
    summarise: &dyn Fn(&Run, &BackendResult) -> Summary,
) -> Result<()> {
    // Kernels and pipelines are built on first use: keep that out of the figures.
    if let Some(j) = jobs.iter().find(|j| j.inputs.is_ok()) {
        let warm = Params { max_new_tokens: args.max_new_tokens.min(2), ..params.clone() };
        let b = bar(1, format!("{name}: warm-up"));
        load::offline(eng, std::slice::from_ref(j), &warm, &b)?;
        b.finish_and_clear();
    }
    let mut offline_rate = None;
    if args.scenario != "server" {
        let b = bar(jobs.len(), format!("{name}: offline"));
        let run = load::offline(eng, jobs, params, &b)?;
        b.finish_and_clear();
        let s = summarise(&run, result);
        offline_rate = Some(s.samples_per_s).filter(|r| *r > 0.0);
        result.summaries.push(s);
    }
    if args.scenario != "offline" {
        let qps = args.qps.or(offline_rate.map(|r| r / 2.0)).unwrap_or(1.0);
        let chosen = if args.find_max_qps {
            let search = Search {
                start_qps: qps,
                latency_bound: args.latency_bound,
                max_runs: args.max_search_runs,
                seed: args.seed,
            };
            let found = load::find_max_qps(eng, jobs, params, &search, |q| {
                bar(jobs.len(), format!("{name}: server {q:.3} q/s"))
            })?;
            result.max_qps = found.best;
            result.load_points = found.runs.iter().map(|(r, ok)| point(r, *ok)).collect();
            let best = found.runs.iter().filter(|(r, ok)| *ok && r.offered_qps == found.best).map(|(r, _)| r).next();
            best.or(found.runs.last().map(|(r, _)| r)).cloned()
        } else {
            let b = bar(jobs.len(), format!("{name}: server {qps:.3} q/s"));
            let run = load::server(eng, jobs, params, qps, args.seed, &b)?;
            b.finish_and_clear();
            result.load_points.push(point(&run, load::passes(&run, args.latency_bound)));
            Some(run)
        };
        if let Some(run) = chosen {
            result.summaries.push(summarise(&run, result));
        }
    }
    Ok(())
}

fn report_of(args: &BenchArgs, model: &str, dataset: String) -> Report {
    Report {
        lumen: env!("CARGO_PKG_VERSION").into(),
        model: model.into(),
        dataset,
        samples: args.samples,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
        max_seqs: args.max_seqs,
        latency_bound_s: args.latency_bound,
        backends: Vec::new(),
    }
}

/// `--server URL`: the scenarios against an OpenAI-compatible server; no model is loaded.
fn run_remote(args: &BenchArgs, url: &str) -> Result<Report> {
    let (samples, dataset) = samples(args)?;
    let chats: Vec<Result<serde_json::Value>> = samples.iter().map(super::http::chat_messages).collect();
    let jobs: Vec<Job> = chats
        .iter()
        .enumerate()
        .map(|(i, c)| Job {
            sample: i,
            // The server tokenizes: the prompt's length is not known here.
            inputs: c
                .as_ref()
                .map(|_| PrefillInputs { ids: Vec::new(), images: Vec::new() })
                .map_err(|e| e.to_string()),
        })
        .collect();
    let chats = chats.into_iter().map(|c| c.unwrap_or(serde_json::Value::Null)).collect();
    let mut eng = super::http::HttpServe::connect(url, chats)?;
    eprintln!("{}", eng.describe());
    let params = Params { max_new_tokens: args.max_new_tokens, ..Default::default() };
    let mut report = report_of(args, &eng.model.clone(), dataset);
    let mut result = BackendResult {
        backend: "http".into(),
        device: url.into(),
        engine: eng.describe(),
        summaries: Vec::new(),
        max_qps: None,
        load_points: Vec::new(),
    };
    let summarise = |run: &Run, r: &BackendResult| Summary::of(run, &r.backend, &r.device, &r.engine);
    scenarios(args, "http", &mut eng, &jobs, &params, &mut result, &summarise)?;
    report.backends.push(result);
    finish(args, report)
}

/// Runs the benchmark: `open` makes the model (once per backend), `processor` its tokenizer
/// and chat template. Prints the table and returns the report. With `--server`, neither is
/// called: the requests go to that server.
pub fn run(
    args: &BenchArgs,
    model_label: &str,
    open: &dyn Fn() -> Result<Qwen3VL>,
    processor: &dyn Fn(&Qwen3VL) -> Result<Processor>,
) -> Result<Report> {
    check(args)?;
    if let Some(url) = &args.server {
        return run_remote(args, url);
    }
    let backends: Vec<&str> = args.backend.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if backends.is_empty() {
        return Err(Error::Input("--backend is empty".into()));
    }
    let mut first_model = Some(open()?);
    let proc = processor(first_model.as_ref().ok_or_else(|| Error::Input("no model".into()))?)?;
    let (samples, jobs, dataset) = jobs(args, &proc)?;
    let params = Params { max_new_tokens: args.max_new_tokens, stop: proc.stop_ids.clone(), ..Default::default() };
    let mut report = report_of(args, model_label, dataset);
    for name in backends {
        let sel = select(name)?;
        eprintln!("{}", sel.reason);
        let model = match first_model.take() {
            Some(m) => m,
            None => open()?,
        };
        let mut session = Session::new(sel.backend.as_ref(), model);
        session.upload_all(|_, _| {})?;
        let mut eng = engine(&mut session, args)?;
        let info = sel.backend.info();
        let mut result = BackendResult {
            backend: info.backend.into(),
            device: info.name.clone(),
            engine: eng.describe(),
            summaries: Vec::new(),
            max_qps: None,
            load_points: Vec::new(),
        };
        let summarise = |run: &Run, r: &BackendResult| summarise(run, r, &samples, &proc, args.accuracy);
        scenarios(args, name, eng.as_mut(), &jobs, &params, &mut result, &summarise)?;
        drop(eng);
        report.backends.push(result);
    }
    finish(args, report)
}

/// Prints the table and writes the JSON report and the plot when asked.
fn finish(args: &BenchArgs, report: Report) -> Result<Report> {
    print!("{}", report.table());
    if let Some(path) = &args.out {
        write(path, &report.json())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        write(path, &super::plot::latency_svg(&report))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(report)
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    }
    std::fs::write(path, text).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}
