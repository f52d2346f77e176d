//! `lumen-desktop`: ask a Qwen3-VL model about an image in a window. Open or drop an image,
//! type a question and watch the answer stream in, with the backend and device that run the
//! model and its speed. The model loads and answers on worker threads; the window (egui on
//! wgpu, the wgpu lumen itself runs on) never waits for them.
//!
//! `--ask` and `--screenshot` drive it without a person: ask as soon as the model is loaded,
//! save a picture of the window once the answer is complete, and quit (see docs/desktop.md).

mod app;
mod picture;
mod worker;

use std::path::PathBuf;
use std::process::exit;
use std::sync::{Arc, Mutex};

const USAGE: &str = "\
usage: lumen-desktop [OPTIONS]

  --model DIR         checkpoint directory (default: the repository's tests/fixtures/qwen3vl-dense)
  --backend B         auto | wgpu | cpu | cuda (default: auto)
  --image PATH        open this image (PNG or JPEG) at start
  --prompt TEXT       the question (default: \"What is in this picture?\")
  --ask               ask as soon as the model is loaded
  --max-tokens N      most tokens per answer (default: 256)
  --screenshot OUT    once the answer is complete, save the window as PNG to OUT and quit
  -h, --help          this text

Prints `backend: ...` when the model is loaded and `answer: ...` when an answer is complete.";

/// What the command line asks for.
#[derive(Debug, Clone)]
pub struct Args {
    /// The checkpoint directory.
    pub model: PathBuf,
    /// `auto`, `wgpu`, `cpu` or `cuda`.
    pub backend: String,
    /// An image to open at start.
    pub image: Option<PathBuf>,
    /// The question in the box at start.
    pub prompt: String,
    /// Ask as soon as the model (and the image) are loaded.
    pub ask: bool,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Save the window here once the answer is complete, then quit.
    pub screenshot: Option<PathBuf>,
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/qwen3vl-dense");
        let mut args = Args {
            model: PathBuf::from(fixture),
            backend: "auto".into(),
            image: None,
            prompt: "What is in this picture?".into(),
            ask: false,
            max_tokens: 256,
            screenshot: None,
        };
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--model" => args.model = value()?.into(),
                "--backend" => args.backend = value()?,
                "--image" => args.image = Some(value()?.into()),
                "--prompt" => args.prompt = value()?,
                "--ask" => args.ask = true,
                "--max-tokens" => {
                    let v = value()?;
                    args.max_tokens =
                        v.parse().ok().filter(|&n| n > 0).ok_or(format!("--max-tokens {v}: not a count"))?;
                }
                "--screenshot" => args.screenshot = Some(value()?.into()),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    exit(0)
                }
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        if !["auto", "wgpu", "cpu", "cuda"].contains(&args.backend.as_str()) {
            return Err(format!("--backend {}: one of auto, wgpu, cpu, cuda", args.backend));
        }
        Ok(args)
    }
}

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lumen-desktop: {e}\n\n{USAGE}");
            exit(2)
        }
    };
    // The window's exit status, set by the app (a failed load or answer in --screenshot runs).
    let status = Arc::new(Mutex::new(0));
    let size = [1100.0, 720.0];
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("lumen")
            .with_app_id("lumen-desktop")
            .with_inner_size(size)
            .with_min_inner_size([640.0, 420.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    let app_status = status.clone();
    let ran = eframe::run_native(
        "lumen-desktop",
        options,
        Box::new(move |cc| Ok(Box::new(app::App::new(cc, args, app_status)))),
    );
    if let Err(e) = ran {
        eprintln!("lumen-desktop: cannot open the window: {e}");
        exit(1)
    }
    // Leaves at once: the model's engine thread need not wind down for a closed window.
    let code = *status.lock().unwrap_or_else(|p| p.into_inner());
    exit(code)
}
