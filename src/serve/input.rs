//! From a checked request to model inputs (images decoded and preprocessed, the chat template
//! rendered, the text tokenized) and the request's token limit, with every failure a 400.

use super::protocol::{ApiError, ChatRequest, ImageUrl};
use crate::api::request::plain as message;
use crate::io::image::preprocess;
use crate::model::processor::Processor;
use crate::model::qwen3_vl::PrefillInputs;

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

/// The answer's token limit (see [`crate::api::request::max_new_tokens`]), the error naming
/// the parameter at fault.
pub fn max_new_tokens(req: &ChatRequest, prompt: usize, limit: usize, default: usize) -> Result<usize, ApiError> {
    crate::api::request::max_new_tokens(prompt, req.options.max_tokens, limit, default).map_err(|e| {
        let param = if prompt >= limit { "messages" } else { "max_tokens" };
        ApiError::invalid(param, message(e))
    })
}
