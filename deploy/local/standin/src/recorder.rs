//! Call recording: one line per resource request, `VERB GROUP RESOURCE[/SUBRESOURCE]` with
//! Kubernetes RBAC verbs and the core group written `""`, appended to a file. The RBAC check in
//! `deploy/` compares the worker's Role against the union of these lines.
//!
//! Recording is best effort: a failed write is logged, never turned into a failed request.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// Opening the record file failed.
#[derive(Debug, thiserror::Error)]
#[error("opening call-record file {path}: {source}")]
pub struct OpenError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// Appends call lines to a file (or does nothing when disabled).
#[derive(Debug, Default)]
pub struct Recorder {
    file: Option<Mutex<File>>,
}

impl Recorder {
    /// A recorder appending to `path` (created, with parent directories, if missing), or a
    /// disabled one for `None`.
    pub fn open(path: Option<&Path>) -> Result<Self, OpenError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let err = |source| OpenError { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        Ok(Self { file: Some(Mutex::new(file)) })
    }

    /// Append one line.
    pub fn record(&self, line: &str) {
        let Some(file) = &self.file else { return };
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(format!("{line}\n").as_bytes()) {
            tracing::warn!(%error, "could not record call");
        }
    }
}
