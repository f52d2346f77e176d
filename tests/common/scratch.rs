//! Scratch directories for tests: under the temp dir, named by tag and process, emptied when
//! made and removed when dropped (also when the test panics), so runs leave nothing behind.

use std::path::{Path, PathBuf};

/// A scratch directory, removed with everything in it when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh, empty `lumen-TAG-PID` directory under the temp dir.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lumen-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
