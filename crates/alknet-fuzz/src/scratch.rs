//! Directories that a fixture builds once per process and that go at exit.
//!
//! A fixture lives in a static, and statics are never dropped, so a
//! `TempDir` kept in one would stay behind after every run; these are
//! removed by a function registered with `atexit` instead. A run that
//! crashes leaves its directory behind, under the prefix it was given.

use std::path::PathBuf;
use std::sync::{Mutex, Once};

/// The directories to remove at exit.
static DIRECTORIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A new directory under the temporary directory, named `<prefix>…`,
/// removed with everything in it when the process exits.
pub(crate) fn directory(prefix: &str) -> std::io::Result<PathBuf> {
    static REGISTER: Once = Once::new();
    let path = tempfile::Builder::new().prefix(prefix).tempdir()?.keep();
    DIRECTORIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(path.clone());
    // SAFETY: registers a plain function with no arguments, run once at
    // exit; it touches only this module's static.
    REGISTER.call_once(|| unsafe {
        libc::atexit(remove_all);
    });
    Ok(path)
}

extern "C" fn remove_all() {
    let directories = DIRECTORIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for directory in directories.iter() {
        let _ = std::fs::remove_dir_all(directory);
    }
}
