//! From a checked request to model inputs (images decoded and preprocessed, the chat template
//! rendered, the text tokenized) and the request's token limit, with every failure a 400.

use super::protocol::{ApiError, ChatRequest, ImageUrl};
use crate::io::image::preprocess;
use crate::model::processor::Processor;
use crate::model::qwen3_vl::PrefillInputs;
use crate::Error;

/// Prepares the prompt. Runs on a blocking thread: decoding images takes a while.
pub fn prepare(processor: &Processor, req: &ChatRequest, allow_local_files: bool) -> Result<PrefillInputs, ApiError> {
    let mut images = Vec::with_capacity(req.images.len());
    for img in &req.images {
        let owned;
        let bytes: &[u8] = match &img.url {
            ImageUrl::Inline(b) => b,
            ImageUrl::File(path) => {
                if !allow_local_files {
                    return Err(ApiError::invalid(
                        &img.param,
                        format!(
                            "`{}`: file:// image URLs are refused; start the server with --allow-local-files to allow them",
                            img.param
                        ),
                    ));
                }
                owned = std::fs::read(path)
                    .map_err(|e| ApiError::invalid(&img.param, format!("`{}`: cannot read {path}: {e}", img.param)))?;
                &owned
            }
        };
        let pixels = preprocess(&processor.image, bytes).map_err(|e| {
            ApiError::invalid(&img.param, format!("`{}` is not a usable image: {}", img.param, message(e)))
        })?;
        images.push(pixels);
    }
    processor.prepare(&req.messages, images).map_err(|e| ApiError::invalid("messages", message(e)))
}

/// The error's text without its variant's prefix.
fn message(e: Error) -> String {
    match e {
        Error::Input(m) | Error::Model(m) | Error::Io(m) => m,
        other => other.to_string(),
    }
}

/// The answer's token limit: the request's, or `default` cut to what fits; an error when the
/// prompt plus the request's limit exceed `limit` (the context, or the KV cache when smaller).
pub fn max_new_tokens(req: &ChatRequest, prompt: usize, limit: usize, default: usize) -> Result<usize, ApiError> {
    if prompt >= limit {
        return Err(ApiError::invalid(
            "messages",
            format!("the prompt is {prompt} tokens; this model's context is {limit} tokens"),
        ));
    }
    match req.max_tokens {
        Some(n) if prompt + n > limit => Err(ApiError::invalid(
            "max_tokens",
            format!(
                "max_tokens is {n} but the prompt is {prompt} tokens and this model's context is {limit} tokens: \
                 at most {} new tokens fit",
                limit - prompt
            ),
        )),
        Some(n) => Ok(n),
        None => Ok(default.min(limit - prompt)),
    }
}
