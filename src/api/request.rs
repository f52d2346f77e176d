//! What a request says: chat messages of text and images (files, encoded bytes or decoded RGB
//! pixels), how to answer (token limit, sampling, stop strings), and how those become model
//! inputs.

use crate::engine::sampler::SamplingOptions;
use crate::io::chat::{Message, Part};
use crate::io::image::{preprocess, preprocess_file, preprocess_rgb, ImageConfig, Pixels, RgbImage};
use crate::model::processor::Processor;
use crate::model::qwen3_vl::PrefillInputs;
use crate::{Error, Result};
use std::path::PathBuf;

/// An image for the model.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A PNG or JPEG file.
    Path(PathBuf),
    /// A PNG or JPEG file's bytes.
    Bytes(Vec<u8>),
    /// Decoded pixels: `height * width * 3` bytes, row by row, RGB.
    Rgb {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// The pixels.
        pixels: Vec<u8>,
    },
}

impl ImageSource {
    /// Decodes (where needed) and preprocesses the image for a model with these settings.
    pub fn load(&self, config: &ImageConfig) -> Result<Pixels> {
        match self {
            ImageSource::Path(p) => preprocess_file(config, p),
            ImageSource::Bytes(b) => preprocess(config, b),
            ImageSource::Rgb { width, height, pixels } => {
                // The check is preprocess_rgb's; the copy is the price of not taking ownership.
                preprocess_rgb(config, &RgbImage { width: *width, height: *height, data: pixels.clone() })
            }
        }
    }
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Text.
    Text(String),
    /// An image, shown to the model where it stands in the message.
    Image(ImageSource),
}

impl Content {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text(text.into())
    }

    /// An image file (PNG or JPEG).
    pub fn image_path(path: impl Into<PathBuf>) -> Self {
        Content::Image(ImageSource::Path(path.into()))
    }

    /// An encoded image (PNG or JPEG bytes).
    pub fn image_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Content::Image(ImageSource::Bytes(bytes.into()))
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its parts, in order.
    pub content: Vec<Content>,
}

impl ChatMessage {
    /// A message with these parts.
    pub fn new(role: impl Into<String>, content: Vec<Content>) -> Self {
        ChatMessage { role: role.into(), content }
    }

    /// A user message with these parts.
    pub fn user(content: Vec<Content>) -> Self {
        ChatMessage::new("user", content)
    }

    /// A system message of plain text.
    pub fn system(text: impl Into<String>) -> Self {
        ChatMessage::new("system", vec![Content::text(text)])
    }

    /// An earlier answer of the model (for multi-turn conversations).
    pub fn assistant(text: impl Into<String>) -> Self {
        ChatMessage::new("assistant", vec![Content::text(text)])
    }
}

/// How to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    /// Most new tokens; `None`: as many as fit in the context (at most 512).
    pub max_tokens: Option<usize>,
    /// 0 is greedy (the default).
    pub temperature: f32,
    /// Nucleus sampling mass (1: all tokens).
    pub top_p: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Sampling seed; `None`: one from the clock.
    pub seed: Option<u64>,
    /// The answer ends before the first of these strings (not included).
    pub stop: Vec<String>,
    /// Keep going past the model's end-of-answer tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        GenerationOptions {
            max_tokens: None,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// New tokens when a request gives no limit.
pub const DEFAULT_MAX_TOKENS: usize = 512;

impl GenerationOptions {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        GenerationOptions { max_tokens: Some(max_tokens), ..Default::default() }
    }

    /// Checks the values (a clear error, never a panic later).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Input(m));
        if self.max_tokens == Some(0) {
            return bad("max_tokens must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature must be a number >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return bad("stop strings must not be empty".into());
        }
        Ok(())
    }

    /// The sampler's settings, with `fallback` as the seed when none was given.
    pub fn sampling(&self, fallback: u64) -> SamplingOptions {
        SamplingOptions {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed.unwrap_or(fallback),
        }
    }
}

/// Model inputs for a conversation: every image decoded and preprocessed (an error names the
/// image), the chat template rendered with the generation prompt, the text tokenized.
pub fn prepare(processor: &Processor, messages: &[ChatMessage]) -> Result<PrefillInputs> {
    if messages.is_empty() {
        return Err(Error::Input("a conversation needs at least one message".into()));
    }
    let mut images = Vec::new();
    let mut converted = Vec::with_capacity(messages.len());
    for (m, msg) in messages.iter().enumerate() {
        let mut parts = Vec::with_capacity(msg.content.len());
        for (p, part) in msg.content.iter().enumerate() {
            match part {
                Content::Text(t) => parts.push(Part::Text(t.clone())),
                Content::Image(src) => {
                    let pixels = src.load(&processor.image).map_err(|e| {
                        Error::Input(format!("message {m}, part {p}: not a usable image: {}", plain(e)))
                    })?;
                    images.push(pixels);
                    parts.push(Part::Image);
                }
            }
        }
        converted.push(Message::new(msg.role.clone(), parts));
    }
    processor.prepare(&converted, images)
}

/// The error's text without its variant's prefix.
pub fn plain(e: Error) -> String {
    match e {
        Error::Input(m) | Error::Model(m) | Error::Io(m) => m,
        other => other.to_string(),
    }
}

/// The answer's token limit: `requested`, or `default` cut to what fits; an error when the
/// prompt alone, or the prompt plus `requested`, exceeds `limit` (the context, or the KV cache
/// when smaller).
pub fn max_new_tokens(prompt: usize, requested: Option<usize>, limit: usize, default: usize) -> Result<usize> {
    if prompt >= limit {
        return Err(Error::Input(format!(
            "the prompt is {prompt} tokens; this model's context (and KV cache) holds {limit} tokens"
        )));
    }
    match requested {
        Some(n) if prompt + n > limit => Err(Error::Input(format!(
            "max_tokens is {n} but the prompt is {prompt} tokens and this model's context (and KV cache) \
             holds {limit} tokens: at most {} new tokens fit",
            limit - prompt
        ))),
        Some(n) => Ok(n),
        None => Ok(default.min(limit - prompt)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fit_the_context() {
        assert_eq!(max_new_tokens(10, None, 100, 512).unwrap(), 90);
        assert_eq!(max_new_tokens(10, Some(5), 100, 512).unwrap(), 5);
        assert!(max_new_tokens(10, Some(91), 100, 512).unwrap_err().to_string().contains("at most 90"));
        assert!(max_new_tokens(100, None, 100, 512).unwrap_err().to_string().contains("context"));
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(GenerationOptions::default().validate().is_ok());
        for o in [
            GenerationOptions { max_tokens: Some(0), ..Default::default() },
            GenerationOptions { temperature: f32::NAN, ..Default::default() },
            GenerationOptions { top_p: 0.0, ..Default::default() },
            GenerationOptions { stop: vec![String::new()], ..Default::default() },
        ] {
            assert!(matches!(o.validate(), Err(Error::Input(_))), "{o:?}");
        }
    }
}
