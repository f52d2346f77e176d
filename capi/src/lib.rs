//! The C ABI of lumen: load a model, build a request (text and images), stream the answer
//! through a callback, cancel from any thread. Every function returns a [`lumen_status`]
//! (0 is success) and leaves a message for [`lumen_last_error`]; handles are opaque ids that
//! are never reused, so a null or destroyed handle is `LUMEN_STATUS_INVALID_HANDLE`, never a
//! crash; no Rust panic crosses the boundary. The header is `capi/include/lumen.h`, generated
//! by cbindgen; `examples/c/chat.c` is a complete program.
#![allow(non_camel_case_types)]
#![warn(missing_docs)]

mod error;
mod generation;
mod handles;
mod model;
mod request;

pub use error::{lumen_last_error, lumen_status, lumen_version};
pub use generation::{
    lumen_generate, lumen_generation, lumen_generation_cancel, lumen_generation_free, lumen_generation_wait,
    lumen_piece_fn,
};
pub use model::{
    lumen_model, lumen_model_backend, lumen_model_device, lumen_model_free, lumen_model_load,
    lumen_model_load_synthetic,
};
pub use request::{
    lumen_request, lumen_request_add_image_bytes, lumen_request_add_image_file, lumen_request_add_text,
    lumen_request_free, lumen_request_new, lumen_request_set_max_tokens, lumen_request_set_sampling,
};
