//! Generations: an answer produced on a lumen thread, handed to a callback piece by piece.

use crate::error::{fail, guard, invalid, lumen_status, Fail};
use crate::handles::{write_out, Table};
use crate::model::{lumen_model, MODELS};
use crate::request::{lumen_request, REQUESTS};
use lumen::{CancelHandle, Generation};
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};

/// Receives one piece of the answer: `len` bytes of UTF-8 at `piece` (also NUL-terminated),
/// and the `user` pointer given to [`lumen_generate`]. Called on a lumen thread, in order;
/// return 0 to go on, anything else to cancel.
pub type lumen_piece_fn = Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user: *mut c_void) -> i32>;

/// An answer being generated (opaque).
pub struct lumen_generation {
    _private: [u8; 0],
}

struct Gen {
    cancel: CancelHandle,
    /// The outcome once finished.
    outcome: Mutex<Option<Fail>>,
    done: Condvar,
}

static GENERATIONS: Table<Gen> = Table::new("generation");

/// The caller's pointer, handed to the callback on the generation thread.
struct User(*mut c_void);
// SAFETY: lumen never dereferences it; the caller promises it may be used from another thread.
unsafe impl Send for User {}

fn stream(mut g: Generation, on_piece: lumen_piece_fn, user: User) -> Fail {
    let cancel = g.cancel_handle();
    for piece in &mut g {
        let piece = match piece {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        if let Some(cb) = on_piece {
            let c = CString::new(piece.replace('\0', " ")).unwrap_or_default();
            // SAFETY: the caller's function, called as its type says.
            if unsafe { cb(c.as_ptr(), c.as_bytes().len(), user.0) } != 0 {
                cancel.cancel();
            }
        }
    }
    match g.finish_reason() {
        Some(lumen::FinishReason::Cancelled) => (lumen_status::Cancelled, "the generation was cancelled".into()),
        _ => (lumen_status::Ok, String::new()),
    }
}

/// Starts answering `req` with `model`; pieces go to `on_piece` (may be NULL) on a lumen
/// thread. Images are read and the prompt checked here: an unusable image or a prompt too
/// long fails this call. Writes the handle to `*out`; wait for the end with
/// [`lumen_generation_wait`], then free it.
#[no_mangle]
pub extern "C" fn lumen_generate(
    model: *const lumen_model,
    req: *const lumen_request,
    on_piece: lumen_piece_fn,
    user: *mut c_void,
    out: *mut *mut lumen_generation,
) -> lumen_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("the output pointer is null"));
        }
        let m = MODELS.get(model)?;
        let r = REQUESTS.get(req)?;
        let (messages, opts) = {
            let g = r.lock().unwrap_or_else(|p| p.into_inner());
            (g.messages.clone(), g.opts.clone())
        };
        let gen = m.lumen.generate(&messages, &opts).map_err(fail)?;
        let id =
            GENERATIONS.insert(Gen { cancel: gen.cancel_handle(), outcome: Mutex::new(None), done: Condvar::new() });
        let handle = GENERATIONS.get(id as *const lumen_generation)?;
        let user = User(user);
        let spawned = std::thread::Builder::new().name("lumen-capi-generation".into()).spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| stream(gen, on_piece, user))).unwrap_or_else(|_| {
                (lumen_status::Internal, "internal error (a bug in lumen): the generation thread panicked".into())
            });
            *handle.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            handle.done.notify_all();
        });
        if let Err(e) = spawned {
            let _ = GENERATIONS.remove(id as *const lumen_generation);
            return Err((lumen_status::Internal, format!("cannot start a thread: {e}")));
        }
        write_out(out, id)
    })
}

/// Waits for the generation thread's outcome.
fn finished(g: &Gen) -> Fail {
    let mut outcome = g.outcome.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        match &*outcome {
            Some(o) => return o.clone(),
            None => outcome = g.done.wait(outcome).unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// Blocks until the answer is complete; returns its outcome (`LUMEN_STATUS_OK`,
/// `LUMEN_STATUS_CANCELLED`, or the error, whose message `lumen_last_error()` then gives).
#[no_mangle]
pub extern "C" fn lumen_generation_wait(generation: *mut lumen_generation) -> lumen_status {
    guard(|| match finished(&*GENERATIONS.get(generation)?) {
        (lumen_status::Ok, _) => Ok(()),
        fail => Err(fail),
    })
}

/// Asks the generation to stop (from any thread); its wait then returns `LUMEN_STATUS_CANCELLED`.
#[no_mangle]
pub extern "C" fn lumen_generation_cancel(generation: *mut lumen_generation) -> lumen_status {
    guard(|| {
        GENERATIONS.get(generation)?.cancel.cancel();
        Ok(())
    })
}

/// Frees a generation, cancelling it and waiting for its thread when it is still running
/// (so the callback is never called after this returns).
#[no_mangle]
pub extern "C" fn lumen_generation_free(generation: *mut lumen_generation) -> lumen_status {
    let status = lumen_generation_cancel(generation);
    if status != lumen_status::Ok {
        return status;
    }
    guard(|| {
        finished(&*GENERATIONS.remove(generation)?);
        Ok(())
    })
}
