//! Status codes, the per-thread last error message, and the guard every entry point runs in
//! (errors become codes, panics become `LUMEN_STATUS_INTERNAL`).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call returns: 0 on success.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lumen_status {
    /// Success.
    Ok = 0,
    /// A null pointer, a string that is not UTF-8, a value out of range.
    InvalidArgument = 1,
    /// A null, destroyed or wrong kind of handle.
    InvalidHandle = 2,
    /// Bad input data: an unusable image, a prompt too long for the context.
    Input = 3,
    /// A model that cannot be loaded (config, weights, tokenizer).
    Model = 4,
    /// The device or backend failed, or the engine stopped.
    Backend = 5,
    /// A file could not be read.
    Io = 6,
    /// The generation was cancelled.
    Cancelled = 7,
    /// A bug in lumen (a caught panic).
    Internal = 8,
}

/// A failed call: its code and message.
pub(crate) type Fail = (lumen_status, String);

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST.with(|l| *l.borrow_mut() = c);
}

/// The message of the last failed call on this thread ("" when none failed). The pointer
/// stays valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn lumen_last_error() -> *const c_char {
    LAST.with(|l| l.borrow().as_ptr())
}

/// The library's version, e.g. "0.1.0" (a static string).
#[no_mangle]
pub extern "C" fn lumen_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The status for a lumen error, with its message.
pub(crate) fn fail(e: lumen::Error) -> Fail {
    let status = match &e {
        lumen::Error::Input(_) | lumen::Error::Data(_) | lumen::Error::InputMismatch { .. } => lumen_status::Input,
        lumen::Error::Model(_) => lumen_status::Model,
        lumen::Error::Io(_) => lumen_status::Io,
        lumen::Error::Backend(_) => lumen_status::Backend,
        lumen::Error::Shape { .. } | lumen::Error::Graph(_) => lumen_status::Internal,
    };
    (status, e.to_string())
}

pub(crate) fn invalid(msg: impl Into<String>) -> Fail {
    (lumen_status::InvalidArgument, msg.into())
}

/// Runs an entry point: its error becomes a status and the thread's last error, a panic
/// becomes `Internal`.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Fail>) -> lumen_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => lumen_status::Ok,
        Ok(Err((status, msg))) => {
            set_last(&msg);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_last(&format!("internal error (a bug in lumen, please report it): {what}"));
            lumen_status::Internal
        }
    }
}
