//! The `lumen` command line: a thin shell over the library.

use clap::{Parser, Subcommand};
use lumen::backend::{select, Backend};
use lumen::compile::report::{listing, Summary};
use lumen::compile::{compile, Options as CompileOptions};
use lumen::engine::batch::BatchOptions;
use lumen::engine::bench::{speed_run, SpeedRun};
use lumen::engine::Session;
use lumen::io::chat::{Message, Part};
use lumen::model::processor::Processor;
use lumen::model::qwen3_vl::{DecodeGraph, PrefillGraph, PrefillInputs, Qwen3VL};
use lumen::{ChatMessage, Content, GenerationOptions, LoadOptions, LoadProgress, Lumen};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod model_args;
use model_args::{ModelArgs, Request};

#[derive(Parser)]
#[command(name = "lumen", version, about = "Run vision-language models on any GPU")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every backend and adapter found, one line each.
    Devices,
    /// Pick a backend as `--backend` says and print which one and why.
    Select {
        /// auto, wgpu or cpu.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Answer a prompt (with images) and stream the answer.
    Run {
        #[command(flatten)]
        req: Request,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Sampling temperature (0: greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling mass.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Keep only the k most likely tokens (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Random seed for sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Room in the KV cache, in tokens: the prompt (images included) and the answer must fit.
        #[arg(long, default_value_t = 4096)]
        kv_tokens: usize,
    },
    /// Print the compiled plan of a request: kernels in order with shapes, then a summary
    /// (launches per decoder layer and vision block, peak activation memory).
    Graph {
        #[command(flatten)]
        req: Request,
        /// Which step to compile: the prompt, or one decode step after it.
        #[arg(long, default_value = "prefill", value_parser = ["prefill", "decode"])]
        phase: String,
        /// Only print the summary line.
        #[arg(long)]
        summary: bool,
    },
    /// Check a backend: every op conformance case against the CPU oracle, then the tiny
    /// fixture checkpoints against transformers' logits; prints one line per check and
    /// `N passed, M failed` last (non-zero exit status on a failure).
    Selftest {
        /// auto, wgpu, cuda or cpu.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Folder of fixture checkpoints (qwen3vl-dense, qwen3vl-moe); skipped when absent.
        #[arg(long, default_value = "tests/fixtures")]
        fixtures: PathBuf,
        /// Only the op case groups whose names contain this (e.g. `qmatmul`); no fixtures.
        #[arg(long)]
        only: Option<String>,
    },
    /// Compile every CUDA kernel family for an architecture into the kernel cache
    /// (`LUMEN_CUDA_CACHE`), for a GPU machine without NVRTC.
    #[command(hide = true)]
    CudaPtx {
        /// NVRTC architecture, e.g. sm_90a (Hopper).
        #[arg(long)]
        arch: String,
    },
    /// Time a prefill of random prompt tokens and greedy decode steps after it (after a
    /// warm-up); prints one line of figures.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// auto, wgpu, cuda or cpu.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Prompt tokens.
        #[arg(long, default_value_t = 128)]
        prefill: usize,
        /// Decode steps.
        #[arg(long, default_value_t = 32)]
        decode: usize,
        /// Seed of the prompt tokens.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Run the graphs as built, without the compiler's fusion passes.
        #[arg(long)]
        no_fuse: bool,
        #[command(flatten)]
        extras: lumen::engine::bench::Extras,
    },
    /// Print the config.json of a synthetic preset (what `--synthetic` builds), e.g. for
    /// building the same model in another framework.
    Config {
        /// tiny, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b, qwen3-vl-30b-a3b, qwen3-vl-235b-a22b.
        #[arg(long, value_name = "PRESET")]
        synthetic: String,
        /// Keep only the first N decoder layers.
        #[arg(long)]
        layers: Option<usize>,
    },
    /// MLPerf-style serving benchmark on product-catalogue samples: Offline (all requests at
    /// once) and Server (Poisson arrivals) scenarios, a table, JSON and a latency plot.
    ServeBench {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        bench: lumen::bench::cli::BenchArgs,
    },
    /// Serve the OpenAI chat-completions API over HTTP (streaming, images, metrics).
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        serve: lumen::serve::ServeArgs,
    },
    /// Run one prefill and write the last prompt position's logits as a float32 .npy [vocab].
    Logits {
        #[command(flatten)]
        req: Request,
        /// Where to write the .npy file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a model through the embedding API, with a progress bar while weights upload.
fn load_with_bar(model: &ModelArgs, opts: &LoadOptions) -> lumen::Result<Lumen> {
    let t0 = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let progress = move |p: LoadProgress| {
        if let LoadProgress::Uploading { done, total } = p {
            if bar.is_none() && t0.elapsed().as_millis() > 500 {
                bar = Some(weights_bar(total));
            }
            if let Some(b) = &bar {
                b.set_position(done as u64);
                if done == total {
                    b.finish_and_clear();
                }
            }
        }
    };
    let opts = LoadOptions { quantize: model.quantization()?, ..opts.clone() };
    Lumen::load_with_progress(&model.source(), &opts, progress).map_err(|e| model.cli_error(e))
}

fn weights_bar(total: usize) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("loading weights {bar:40} {pos}/{len} tensors {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// Loads the model on the chosen backend and prepares the request's inputs.
fn load<'b>(req: &Request, backend: &'b dyn Backend) -> lumen::Result<(Session<'b>, Processor, PrefillInputs)> {
    let model = req.model.open()?;
    let processor = req.model.processor(&model)?;
    let session = upload(backend, model, req.compile_options())?;
    let inputs = prepare(req, &processor)?;
    Ok((session, processor, inputs))
}

/// A session with every weight on the device (a progress bar when that takes a while).
fn upload(backend: &dyn Backend, model: Qwen3VL, opts: CompileOptions) -> lumen::Result<Session<'_>> {
    let t0 = Instant::now();
    let mut session = Session::new(backend, model);
    session.set_compile_options(opts);
    let mut bar: Option<indicatif::ProgressBar> = None;
    session.upload_all(|done, total| {
        if bar.is_none() && t0.elapsed().as_millis() > 500 {
            bar = Some(weights_bar(total));
        }
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(session)
}

fn prepare(req: &Request, processor: &Processor) -> lumen::Result<PrefillInputs> {
    let mut content: Vec<Part> = req.images.iter().map(|_| Part::Image).collect();
    content.push(Part::Text(req.prompt.clone()));
    let images = processor.load_images(&req.images)?;
    processor.prepare(&[Message::new("user", content)], images)
}

/// `lumen graph`: compiles the request's prefill (or the decode step after it) for the chosen
/// backend, without loading any weight onto it.
fn print_graph(req: &Request, phase: &str, summary_only: bool) -> lumen::Result<()> {
    let sel = select(&req.backend)?;
    eprintln!("{}", sel.reason);
    let model = req.model.open()?;
    let processor = req.model.processor(&model)?;
    let inputs = prepare(req, &processor)?;
    let (graph, keep) = if phase == "decode" {
        let token = *inputs.ids.last().unwrap_or(&0);
        let g = DecodeGraph::build(&model, token, inputs.ids.len(), 0)?;
        let keep: Vec<_> = g.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
        (g.graph, keep)
    } else {
        let g = PrefillGraph::build(&model, &inputs, false)?;
        let keep: Vec<_> = g.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
        (g.graph, keep)
    };
    let c = compile(&graph, &keep, sel.backend.as_ref(), req.compile_options())?;
    if !summary_only {
        print!("{}", listing(&c));
    }
    let what = if phase == "decode" { "decode step after" } else { "prefill of" };
    println!(
        "{what} {} prompt tokens ({} images) on {}, fusion {}: {}",
        inputs.ids.len(),
        inputs.images.len(),
        sel.backend.info().backend,
        if req.no_fuse { "off" } else { "on" },
        Summary::of(&c)
    );
    Ok(())
}

fn run(cli: Cli) -> lumen::Result<()> {
    match cli.cmd {
        Cmd::Devices => {
            for line in lumen::backend::device_lines() {
                println!("{line}");
            }
        }
        Cmd::Select { backend } => {
            let s = select(&backend)?;
            println!("{}", s.reason);
            println!("{}", s.backend.info());
        }
        Cmd::Run { req, max_tokens, temperature, top_p, top_k, seed, kv_tokens } => {
            let opts = LoadOptions {
                backend: req.backend.clone(),
                fuse: !req.no_fuse,
                batch: BatchOptions { max_seqs: 1, kv_blocks: kv_tokens.div_ceil(16).max(1), ..Default::default() },
                ..Default::default()
            };
            let lumen = load_with_bar(&req.model, &opts)?;
            eprintln!("{}\n{}", lumen.info().backend, lumen.info().weights);
            let mut content: Vec<Content> = req.images.iter().map(Content::image_path).collect();
            content.push(Content::text(req.prompt.clone()));
            let gen = GenerationOptions {
                max_tokens: Some(max_tokens),
                temperature,
                top_p,
                top_k,
                seed: Some(seed),
                ..Default::default()
            };
            let mut answer = lumen.generate(&[ChatMessage::user(content)], &gen)?;
            let mut out = std::io::stdout();
            for piece in &mut answer {
                let _ = out.write_all(piece?.as_bytes());
                let _ = out.flush();
            }
            println!();
            eprintln!(
                "prompt {} tokens, first token after {:.2} s; decode {} tokens at {:.1} tok/s ({})",
                answer.prompt_tokens(),
                answer.time_to_first_token().unwrap_or_default().as_secs_f64(),
                answer.completion_tokens(),
                answer.decode_tokens_per_second().unwrap_or(0.0),
                lumen.info().device
            );
        }
        Cmd::Graph { req, phase, summary } => print_graph(&req, &phase, summary)?,
        Cmd::CudaPtx { arch } => {
            let arch = lumen::backend::cuda::nvrtc::arch_name(&arch)?;
            let n = lumen::backend::cuda::nvrtc::precompile(arch)?;
            println!("compiled {n} CUDA kernel families for {arch}");
        }
        Cmd::Selftest { backend, fixtures, only } => {
            let sel = select(&backend)?;
            eprintln!("{}", sel.reason);
            let mut outcomes = lumen::selftest::run_ops_matching(sel.backend.as_ref(), only.as_deref().unwrap_or(""));
            if only.is_some() && outcomes.is_empty() {
                return Err(lumen::Error::Input(format!(
                    "selftest: no case group matches `{}`",
                    only.unwrap_or_default()
                )));
            }
            if only.is_none() {
                let golden = lumen::selftest::golden::run(sel.backend.as_ref(), &fixtures);
                if golden.is_empty() {
                    eprintln!("no fixture checkpoints under {}: golden checks skipped", fixtures.display());
                }
                outcomes.extend(golden);
            }
            let label = sel.backend.info().backend;
            for o in &outcomes {
                println!("{:<48} {label:<5} {:<6} {}", o.name, if o.passed { "ok" } else { "FAILED" }, o.detail);
            }
            let failed = outcomes.iter().filter(|o| !o.passed).count();
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if failed > 0 {
                return Err(lumen::Error::Backend(format!("selftest: {failed} checks failed on {label}")));
            }
        }
        Cmd::Config { synthetic, layers } => {
            let spec = lumen::model::synthetic::SyntheticSpec::preset(&synthetic)?;
            let spec = match layers {
                Some(n) => spec.with_layers(n)?,
                None => spec,
            };
            println!("{}", spec.config_json());
        }
        Cmd::Bench { model, backend, prefill, decode, seed, no_fuse, extras } => {
            let sel = select(&backend)?;
            eprintln!("{}", sel.reason);
            let what = model
                .synthetic
                .clone()
                .map(|p| format!("synthetic {p}"))
                .map(|w| match &model.quantize {
                    Some(q) => format!("{w} ({q})"),
                    None => w,
                })
                .unwrap_or_else(|| model.model.as_ref().map(|d| d.display().to_string()).unwrap_or_default());
            let m = model.open()?;
            eprintln!("{}", m.weight_summary());
            let layers = m.config.text.num_layers;
            let t0 = Instant::now();
            let mut session = upload(sel.backend.as_ref(), m, CompileOptions { fuse: !no_fuse })?;
            sel.backend.sync()?;
            let load = t0.elapsed();
            let run = SpeedRun { prompt_tokens: prefill, decode_tokens: decode, seed };
            let r = speed_run(&mut session, &run)?;
            println!(
                "{what} ({layers} layers) on {} [{}], fusion {}: weights {:.2} s, warm-up {:.2} s, prefill {} tokens {:.1} ms ({:.1} tok/s), decode {} steps {:.2} ms/token ({:.1} tok/s)",
                sel.backend.info().backend,
                sel.backend.info().name,
                if no_fuse { "off" } else { "on" },
                load.as_secs_f64(),
                r.warmup.as_secs_f64(),
                r.prompt_tokens,
                r.prefill.as_secs_f64() * 1e3,
                r.prefill_tps(),
                r.decode_steps,
                r.decode_ms(),
                r.decode_tps()
            );
            lumen::engine::bench::run_extras(&mut session, &r, &extras)?;
            if let Some(peak) = lumen::engine::bench::peak_rss_bytes() {
                eprintln!("peak RSS {:.1} MiB", peak as f64 / (1u64 << 20) as f64);
            }
        }
        Cmd::ServeBench { mut model, bench } => {
            if model.synthetic.is_some() && model.tokenizer.is_none() {
                model.tokenizer = Some(lumen::bench::cli::DEFAULT_TOKENIZER.into());
            }
            let label = match (&model.model, &model.synthetic, model.layers) {
                (Some(dir), _, _) => dir.display().to_string(),
                (None, Some(p), Some(n)) => format!("synthetic {p} ({n} layers)"),
                (None, p, _) => format!("synthetic {}", p.as_deref().unwrap_or("")),
            };
            lumen::bench::cli::run(&bench, &label, &|| model.open(), &|m| model.processor(m))?;
        }
        Cmd::Serve { mut model, serve } => {
            if model.synthetic.is_some() && model.tokenizer.is_none() {
                model.tokenizer = Some(lumen::bench::cli::DEFAULT_TOKENIZER.into());
            }
            let name = model.source().name();
            lumen::serve::run(
                &serve,
                &name,
                Box::new(move || {
                    let m = model.open()?;
                    let p = model.processor(&m)?;
                    Ok((m, p))
                }),
            )?;
        }
        Cmd::Logits { req, out } => {
            let sel = select(&req.backend)?;
            eprintln!("{}", sel.reason);
            let (mut session, _, inputs) = load(&req, sel.backend.as_ref())?;
            let pre = session.prefill(&inputs, false, false)?;
            let logits = pre.logits.to_f32();
            write_npy(&out, &logits)?;
            eprintln!("wrote {} logits of position {} to {}", logits.len(), inputs.ids.len() - 1, out.display());
        }
    }
    Ok(())
}

fn write_npy(path: &Path, v: &[f32]) -> lumen::Result<()> {
    lumen::io::npy::write_f32(path, &[v.len()], v)
}
