//! Requests: a conversation of text and images, and how to answer it.

use crate::error::{guard, invalid, lumen_status, Fail};
use crate::handles::{str_arg, write_out, Table};
use lumen::{ChatMessage, Content, GenerationOptions};
use std::ffi::c_char;
use std::sync::Mutex;

/// A request being built (opaque): messages and generation options.
pub struct lumen_request {
    _private: [u8; 0],
}

#[derive(Default)]
pub(crate) struct Req {
    pub(crate) messages: Vec<ChatMessage>,
    pub(crate) opts: GenerationOptions,
}

pub(crate) static REQUESTS: Table<Mutex<Req>> = Table::new("request");

/// A new empty request (greedy, up to 512 new tokens); writes the handle to `*out`.
#[no_mangle]
pub extern "C" fn lumen_request_new(out: *mut *mut lumen_request) -> lumen_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("the output pointer is null"));
        }
        write_out(out, REQUESTS.insert(Mutex::new(Req::default())))
    })
}

fn edit(req: *mut lumen_request, f: impl FnOnce(&mut Req) -> Result<(), Fail>) -> Result<(), Fail> {
    let r = REQUESTS.get(req)?;
    let mut g = r.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

/// Appends a part to the last message when it has this role, else starts a new message.
fn push(req: *mut lumen_request, role: *const c_char, part: impl FnOnce() -> Result<Content, Fail>) -> lumen_status {
    guard(|| {
        let role = str_arg(role, "role")?;
        if !["system", "user", "assistant"].contains(&role) {
            return Err(invalid(format!("role must be system, user or assistant, got {role:?}")));
        }
        let part = part()?;
        edit(req, |r| {
            match r.messages.last_mut() {
                Some(m) if m.role == role => m.content.push(part),
                _ => r.messages.push(ChatMessage::new(role, vec![part])),
            }
            Ok(())
        })
    })
}

/// Adds text to the conversation as `role` ("system", "user" or "assistant").
#[no_mangle]
pub extern "C" fn lumen_request_add_text(
    req: *mut lumen_request,
    role: *const c_char,
    text: *const c_char,
) -> lumen_status {
    push(req, role, || Ok(Content::text(str_arg(text, "text")?)))
}

/// Adds an image file (PNG or JPEG) as `role`; it is read when the request is submitted.
#[no_mangle]
pub extern "C" fn lumen_request_add_image_file(
    req: *mut lumen_request,
    role: *const c_char,
    path: *const c_char,
) -> lumen_status {
    push(req, role, || Ok(Content::image_path(str_arg(path, "path")?)))
}

/// Adds an encoded image (PNG or JPEG bytes, copied) as `role`.
///
/// # Safety
/// `data` must point to `len` readable bytes (or be NULL, an error).
#[no_mangle]
pub unsafe extern "C" fn lumen_request_add_image_bytes(
    req: *mut lumen_request,
    role: *const c_char,
    data: *const u8,
    len: usize,
) -> lumen_status {
    push(req, role, || {
        if data.is_null() || len == 0 {
            return Err(invalid("the image bytes are null or empty"));
        }
        // SAFETY: checked non-null; the caller promises `len` readable bytes.
        Ok(Content::image_bytes(unsafe { std::slice::from_raw_parts(data, len) }.to_vec()))
    })
}

/// Sets the most new tokens (at least 1).
#[no_mangle]
pub extern "C" fn lumen_request_set_max_tokens(req: *mut lumen_request, max_tokens: usize) -> lumen_status {
    guard(|| {
        if max_tokens == 0 {
            return Err(invalid("max_tokens must be at least 1"));
        }
        edit(req, |r| {
            r.opts.max_tokens = Some(max_tokens);
            Ok(())
        })
    })
}

/// Sets sampling: `temperature` 0 is greedy; `top_p` in (0, 1]; `top_k` 0 keeps all tokens.
#[no_mangle]
pub extern "C" fn lumen_request_set_sampling(
    req: *mut lumen_request,
    temperature: f32,
    top_p: f32,
    top_k: usize,
    seed: u64,
) -> lumen_status {
    guard(|| {
        let opts = GenerationOptions { temperature, top_p, top_k, seed: Some(seed), ..Default::default() };
        opts.validate().map_err(|e| invalid(e.to_string()))?;
        edit(req, |r| {
            r.opts = GenerationOptions { max_tokens: r.opts.max_tokens, ..opts };
            Ok(())
        })
    })
}

/// Frees a request (generations already started from it are not affected).
#[no_mangle]
pub extern "C" fn lumen_request_free(req: *mut lumen_request) -> lumen_status {
    guard(|| REQUESTS.remove(req).map(drop))
}
