//! Loading and freeing models.

use crate::error::{fail, guard, invalid, lumen_status, Fail};
use crate::handles::{str_arg, write_out, Table};
use lumen::{LoadOptions, Lumen, ModelSource};
use std::ffi::{c_char, CString};
use std::ptr::null;

/// A loaded model (opaque). Thread-safe: any thread may generate with it.
pub struct lumen_model {
    _private: [u8; 0],
}

pub(crate) struct Model {
    pub(crate) lumen: Lumen,
    backend: CString,
    device: CString,
}

pub(crate) static MODELS: Table<Model> = Table::new("model");

fn load(source: ModelSource, backend: *const c_char, out: *mut *mut lumen_model) -> Result<(), Fail> {
    if out.is_null() {
        return Err(invalid("the output pointer is null"));
    }
    let backend = if backend.is_null() { "auto" } else { str_arg(backend, "backend")? };
    let opts = LoadOptions { backend: backend.into(), ..Default::default() };
    let lumen = Lumen::load(&source, &opts).map_err(fail)?;
    let text = |s: &str| CString::new(s.replace('\0', " ")).unwrap_or_default();
    let m = Model { backend: text(&lumen.info().backend), device: text(&lumen.info().device), lumen };
    write_out(out, MODELS.insert(m))
}

/// Loads the checkpoint in `model_dir` (config.json, *.safetensors, tokenizer.json) on
/// `backend` ("auto", "cuda", "wgpu", "cpu"; NULL is "auto"); writes the handle to `*out`.
#[no_mangle]
pub extern "C" fn lumen_model_load(
    model_dir: *const c_char,
    backend: *const c_char,
    out: *mut *mut lumen_model,
) -> lumen_status {
    guard(|| load(ModelSource::dir(str_arg(model_dir, "model_dir")?), backend, out))
}

/// Loads a preset's shapes with seeded random weights ("tiny", "qwen3-vl-2b", ...), prompts
/// tokenized with the tokenizer.json in `tokenizer_dir`.
#[no_mangle]
pub extern "C" fn lumen_model_load_synthetic(
    preset: *const c_char,
    tokenizer_dir: *const c_char,
    backend: *const c_char,
    out: *mut *mut lumen_model,
) -> lumen_status {
    guard(|| {
        let source = ModelSource::synthetic(str_arg(preset, "preset")?, str_arg(tokenizer_dir, "tokenizer_dir")?);
        load(source, backend, out)
    })
}

fn text_of(model: *const lumen_model, pick: fn(&Model) -> &CString) -> *const c_char {
    let mut p = null();
    guard(|| {
        let m = MODELS.get(model)?;
        p = pick(&m).as_ptr();
        Ok(())
    });
    p
}

/// Which backend runs the model and why (valid until the model is freed); NULL for a bad handle.
#[no_mangle]
pub extern "C" fn lumen_model_backend(model: *const lumen_model) -> *const c_char {
    text_of(model, |m| &m.backend)
}

/// The device's name (valid until the model is freed); NULL for a bad handle.
#[no_mangle]
pub extern "C" fn lumen_model_device(model: *const lumen_model) -> *const c_char {
    text_of(model, |m| &m.device)
}

/// Frees a model; generations still running on it end with `LUMEN_STATUS_BACKEND`.
#[no_mangle]
pub extern "C" fn lumen_model_free(model: *mut lumen_model) -> lumen_status {
    guard(|| MODELS.remove(model).map(drop))
}
