//! The C ABI called as C would: bad arguments and handles are codes with messages, a callback
//! that returns non-zero cancels, another thread can cancel, generations run side by side.

use lumen_capi::*;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{null, null_mut};

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last() -> String {
    unsafe { CStr::from_ptr(lumen_last_error()) }.to_string_lossy().into_owned()
}

fn model() -> *mut lumen_model {
    let dir = c(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/qwen3vl-dense"));
    let mut m = null_mut();
    assert_eq!(lumen_model_load(dir.as_ptr(), c("cpu").as_ptr(), &mut m), lumen_status::Ok, "{}", last());
    m
}

fn request(text: &str, max_tokens: usize) -> *mut lumen_request {
    let mut r = null_mut();
    assert_eq!(lumen_request_new(&mut r), lumen_status::Ok);
    assert_eq!(lumen_request_add_text(r, c("user").as_ptr(), c(text).as_ptr()), lumen_status::Ok);
    assert_eq!(lumen_request_set_max_tokens(r, max_tokens), lumen_status::Ok);
    r
}

/// Collects pieces; cancels once `stop_after` pieces arrived (0: never).
struct Sink {
    text: String,
    pieces: usize,
    stop_after: usize,
}

unsafe extern "C" fn collect(piece: *const c_char, len: usize, user: *mut c_void) -> i32 {
    let sink = &mut *(user as *mut Sink);
    let bytes = std::slice::from_raw_parts(piece as *const u8, len);
    sink.text += std::str::from_utf8(bytes).unwrap();
    sink.pieces += 1;
    (sink.stop_after > 0 && sink.pieces >= sink.stop_after) as i32
}

fn generate(m: *mut lumen_model, r: *mut lumen_request, sink: &mut Sink) -> (*mut lumen_generation, lumen_status) {
    let mut g = null_mut();
    let s = lumen_generate(m, r, Some(collect), sink as *mut Sink as *mut c_void, &mut g);
    (g, s)
}

#[test]
fn bad_arguments_and_handles_are_codes_with_messages() {
    let mut m = null_mut();
    assert_eq!(lumen_model_load(null(), null(), &mut m), lumen_status::InvalidArgument);
    assert!(last().contains("model_dir"), "{}", last());
    assert_eq!(lumen_model_load(c("/no/such/model").as_ptr(), null(), &mut m), lumen_status::Io, "{}", last());
    assert!(m.is_null());
    assert_ne!(lumen_model_load(c("/x").as_ptr(), c("quantum").as_ptr(), &mut m), lumen_status::Ok);
    assert!(last().contains("quantum"), "{}", last());
    assert_eq!(lumen_model_free(null_mut()), lumen_status::InvalidHandle);
    assert_eq!(lumen_model_free(12345 as *mut lumen_model), lumen_status::InvalidHandle);
    assert!(lumen_model_backend(null()).is_null());
    let r = request("hi", 4);
    assert_eq!(lumen_request_add_text(r, c("robot").as_ptr(), c("x").as_ptr()), lumen_status::InvalidArgument);
    assert!(last().contains("role"), "{}", last());
    assert_eq!(lumen_request_set_max_tokens(r, 0), lumen_status::InvalidArgument);
    assert_eq!(lumen_request_set_sampling(r, -1.0, 1.0, 0, 0), lumen_status::InvalidArgument);
    assert_eq!(
        unsafe { lumen_request_add_image_bytes(r, c("user").as_ptr(), null(), 3) },
        lumen_status::InvalidArgument
    );
    let mut g = null_mut();
    assert_eq!(lumen_generate(null(), r, None, null_mut(), &mut g), lumen_status::InvalidHandle);
    // A handle of another kind is not mistaken for a model.
    assert_eq!(lumen_generate(r as *const lumen_model, r, None, null_mut(), &mut g), lumen_status::InvalidHandle);
    assert_eq!(lumen_request_free(r), lumen_status::Ok);
    assert_eq!(lumen_request_free(r), lumen_status::InvalidHandle);
    assert!(last().contains("already freed"), "{}", last());
    assert_eq!(lumen_generation_wait(null_mut()), lumen_status::InvalidHandle);
    assert_eq!(unsafe { CStr::from_ptr(lumen_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn answers_stream_cancel_and_run_side_by_side() {
    let m = model();
    assert!(unsafe { CStr::from_ptr(lumen_model_backend(m)) }.to_string_lossy().starts_with("cpu"));
    // Two at once, each equal to the same request alone.
    let r = request("name three colours", 12);
    let mut alone = Sink { text: String::new(), pieces: 0, stop_after: 0 };
    let (g, s) = generate(m, r, &mut alone);
    assert_eq!(s, lumen_status::Ok);
    assert_eq!(lumen_generation_wait(g), lumen_status::Ok, "{}", last());
    assert_eq!(lumen_generation_free(g), lumen_status::Ok);
    assert!(!alone.text.is_empty());
    let mut a = Sink { text: String::new(), pieces: 0, stop_after: 0 };
    let mut b = Sink { text: String::new(), pieces: 0, stop_after: 0 };
    let (ga, _) = generate(m, r, &mut a);
    let (gb, _) = generate(m, r, &mut b);
    assert_eq!(lumen_generation_wait(ga), lumen_status::Ok);
    assert_eq!(lumen_generation_wait(gb), lumen_status::Ok);
    assert_eq!((a.text.as_str(), b.text.as_str()), (alone.text.as_str(), alone.text.as_str()));
    // Waiting twice gives the same outcome; a freed generation is an invalid handle.
    assert_eq!(lumen_generation_wait(ga), lumen_status::Ok);
    lumen_generation_free(ga);
    lumen_generation_free(gb);
    assert_eq!(lumen_generation_cancel(ga), lumen_status::InvalidHandle);
    // A callback returning non-zero cancels.
    let long = request("tell a long story", 400);
    let mut stop = Sink { text: String::new(), pieces: 0, stop_after: 2 };
    let (g, _) = generate(m, long, &mut stop);
    assert_eq!(lumen_generation_wait(g), lumen_status::Cancelled);
    assert!(stop.pieces < 20, "{}", stop.pieces);
    lumen_generation_free(g);
    // Another thread cancels; freeing a running generation cancels and waits for it.
    let mut slow = Sink { text: String::new(), pieces: 0, stop_after: 0 };
    let (g, _) = generate(m, long, &mut slow);
    let gid = g as usize;
    std::thread::spawn(move || lumen_generation_cancel(gid as *mut lumen_generation)).join().unwrap();
    assert_eq!(lumen_generation_wait(g), lumen_status::Cancelled);
    lumen_generation_free(g);
    let mut dropped = Sink { text: String::new(), pieces: 0, stop_after: 0 };
    let (g, _) = generate(m, long, &mut dropped);
    assert_eq!(lumen_generation_free(g), lumen_status::Ok);
    // A bad image fails the call that submits it.
    let bad = request("what is this?", 4);
    let junk = b"junk";
    assert_eq!(unsafe { lumen_request_add_image_bytes(bad, c("user").as_ptr(), junk.as_ptr(), 4) }, lumen_status::Ok);
    let mut none = Sink { text: String::new(), pieces: 0, stop_after: 0 };
    let (_, s) = generate(m, bad, &mut none);
    assert_eq!(s, lumen_status::Input);
    assert!(last().contains("not a usable image"), "{}", last());
    for h in [r, long, bad] {
        lumen_request_free(h);
    }
    assert_eq!(lumen_model_free(m), lumen_status::Ok);
}
