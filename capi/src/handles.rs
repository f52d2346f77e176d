//! Opaque handles: a C pointer that is really an id into a table of live objects. Ids are never
//! reused, so a destroyed handle is found missing rather than dereferenced.

use crate::error::lumen_status;
use crate::error::Fail;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static NEXT: AtomicUsize = AtomicUsize::new(1);

/// Live objects of one kind.
pub(crate) struct Table<T> {
    kind: &'static str,
    live: Mutex<Option<HashMap<usize, Arc<T>>>>,
}

impl<T> Table<T> {
    pub(crate) const fn new(kind: &'static str) -> Self {
        Table { kind, live: Mutex::new(None) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<usize, Arc<T>>) -> R) -> R {
        let mut g = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(g.get_or_insert_with(HashMap::new))
    }

    /// Adds an object; its handle.
    pub(crate) fn insert(&self, v: T) -> usize {
        let id = NEXT.fetch_add(1, Ordering::SeqCst);
        self.with(|m| m.insert(id, Arc::new(v)));
        id
    }

    /// The object behind a handle.
    pub(crate) fn get<H>(&self, h: *const H) -> Result<Arc<T>, Fail> {
        let id = h as usize;
        if id == 0 {
            return Err((lumen_status::InvalidHandle, format!("the {} handle is null", self.kind)));
        }
        self.with(|m| m.get(&id).cloned())
            .ok_or_else(|| (lumen_status::InvalidHandle, format!("not a live {} handle (already freed?)", self.kind)))
    }

    /// Removes an object (it is dropped when the last user lets go).
    pub(crate) fn remove<H>(&self, h: *const H) -> Result<Arc<T>, Fail> {
        let v = self.get(h)?;
        self.with(|m| m.remove(&(h as usize)));
        Ok(v)
    }
}

/// An out-parameter written, or an error when it is null.
pub(crate) fn write_out<H>(out: *mut *mut H, id: usize) -> Result<(), Fail> {
    if out.is_null() {
        return Err(crate::error::invalid("the output pointer is null"));
    }
    // SAFETY: checked non-null; the caller promises it points to writable storage.
    unsafe { *out = id as *mut H };
    Ok(())
}

/// A required C string argument as UTF-8.
pub(crate) fn str_arg<'a>(p: *const std::ffi::c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(crate::error::invalid(format!("`{what}` is null")));
    }
    // SAFETY: checked non-null; the caller promises a NUL-terminated string that outlives the call.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_str().map_err(|_| crate::error::invalid(format!("`{what}` is not UTF-8")))
}
