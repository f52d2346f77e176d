//! The command line's model and request arguments (shared by the subcommands).

use clap::Args;
use lumen::compile::Options as CompileOptions;
use lumen::model::processor::Processor;
use lumen::model::qwen3_vl::{Quantization, Qwen3VL};
use lumen::quant::QFormat;
use lumen::ModelSource;
use std::path::PathBuf;

/// Which model: a checkpoint directory, or a preset's shapes with seeded random weights.
#[derive(Args)]
pub struct ModelArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json, ...).
    #[arg(long, required_unless_present = "synthetic", conflicts_with = "synthetic")]
    pub model: Option<PathBuf>,
    /// Seeded random weights at a preset's shapes, generated on the device (no checkpoint):
    /// tiny, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b, qwen3-vl-30b-a3b, qwen3-vl-235b-a22b.
    #[arg(long, value_name = "PRESET")]
    pub synthetic: Option<String>,
    /// With --synthetic: keep only the first N decoder layers.
    #[arg(long, requires = "synthetic")]
    pub layers: Option<usize>,
    /// With --synthetic: seed of the weights.
    #[arg(long, requires = "synthetic", default_value_t = 0)]
    pub weight_seed: u64,
    /// Quantize the text decoder's linear weights (MoE experts included) as they load: q8 or
    /// q4 (int8 / int4 codes, an f16 scale per 32 inputs), q4z (int4 with a zero point per 32
    /// inputs), fp8 (E4M3 codes, an f32 scale per 128 inputs) or nvfp4 (E2M1 codes, an E4M3
    /// scale per 16 inputs, an f32 scale per weight).
    #[arg(long, value_name = "FORMAT")]
    pub quantize: Option<String>,
    /// With --quantize: quantize the vision tower's linear layers too (attention, MLP, mergers).
    #[arg(long, requires = "quantize")]
    pub quantize_vision: bool,
    /// With --synthetic: folder with tokenizer.json (chat template and preprocessor config
    /// optional) for prompts, e.g. tests/data/qwen3-tokenizer.
    #[arg(long, requires = "synthetic")]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    pub fn source(&self) -> ModelSource {
        match (&self.model, &self.synthetic) {
            (Some(dir), _) => ModelSource::Dir(dir.clone()),
            (None, preset) => ModelSource::Synthetic {
                preset: preset.clone().unwrap_or_default(),
                layers: self.layers,
                seed: self.weight_seed,
                tokenizer: self.tokenizer.clone(),
            },
        }
    }

    pub fn open(&self) -> lumen::Result<Qwen3VL> {
        let mut m = self.source().model()?;
        m.set_quantization(self.quantization()?)?;
        Ok(m)
    }

    pub fn quantization(&self) -> lumen::Result<Option<Quantization>> {
        let q = |f| QFormat::parse(f).map(|f| Quantization { vision: self.quantize_vision, ..Quantization::new(f) });
        self.quantize.as_deref().map(q).transpose()
    }

    /// Tokenizer, chat template and image settings.
    pub fn processor(&self, model: &Qwen3VL) -> lumen::Result<Processor> {
        self.source().processor(model).map_err(|e| self.cli_error(e))
    }

    /// Names the flag that gives a synthetic model its tokenizer.
    pub fn cli_error(&self, e: lumen::Error) -> lumen::Error {
        match e {
            lumen::Error::Input(m) if self.synthetic.is_some() && m.contains("no tokenizer") => {
                lumen::Error::Input(format!("{m} with --tokenizer DIR"))
            }
            e => e,
        }
    }
}

#[derive(Args)]
pub struct Request {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files (JPEG, PNG), in the order they appear before the prompt.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// The user's text.
    #[arg(long)]
    pub prompt: String,
    /// auto, wgpu or cpu.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Run the graphs as built, without the compiler's fusion passes.
    #[arg(long)]
    pub no_fuse: bool,
}

impl Request {
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions { fuse: !self.no_fuse }
    }
}
