//! PersistentVolumeClaims as local directories, for the process kubelet: the claim `c` in
//! namespace `ns` is the directory `<root>/<ns>/<c>`, created on first use (a pod mounting
//! it, or the claim being seen) and removed with everything in it when the claim is deleted.
//!
//! Names are checked to be DNS labels/subdomains before they become path parts, so no
//! object name can point outside the root.

use std::io;
use std::path::{Path, PathBuf};

/// The volume directories under one root.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

/// A name that cannot be a path part.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The namespace or claim name is not a Kubernetes name.
    #[error("{0:?} is not a valid object name")]
    BadName(String),
    /// Creating or removing the directory failed.
    #[error("volume directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Whether `s` is a DNS subdomain (lowercase alphanumerics, `-` and `.`, no `..`).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.contains("..")
}

impl Volumes {
    /// Volumes under `root` (made absolute against the current directory).
    pub fn new(root: &Path) -> Self {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Self { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of claim `claim` in `ns` (not created).
    pub fn dir(&self, ns: &str, claim: &str) -> Result<PathBuf, VolumeError> {
        for name in [ns, claim] {
            if !is_name(name) {
                return Err(VolumeError::BadName(name.to_owned()));
            }
        }
        Ok(self.root.join(ns).join(claim))
    }

    /// The directory of `claim`, created if missing.
    pub fn ensure(&self, ns: &str, claim: &str) -> Result<PathBuf, VolumeError> {
        let path = self.dir(ns, claim)?;
        std::fs::create_dir_all(&path).map_err(|source| VolumeError::Io { path: path.clone(), source })?;
        Ok(path)
    }

    /// Removes the directory of `claim` and its files (a missing directory is fine).
    pub fn remove(&self, ns: &str, claim: &str) -> Result<(), VolumeError> {
        let path = self.dir(ns, claim)?;
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(VolumeError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_claim_is_a_directory_created_on_use_and_removed_with_its_files() {
        let tmp = tempfile::tempdir().unwrap();
        let v = Volumes::new(tmp.path());
        let dir = v.ensure("workspaces", "ws-a-data").unwrap();
        assert_eq!(dir, tmp.path().join("workspaces/ws-a-data"));
        std::fs::write(dir.join("f.txt"), "x").unwrap();
        assert_eq!(v.ensure("workspaces", "ws-a-data").unwrap(), dir, "ensure keeps what is there");
        assert!(dir.join("f.txt").exists());
        v.remove("workspaces", "ws-a-data").unwrap();
        assert!(!dir.exists());
        v.remove("workspaces", "ws-a-data").unwrap();
    }

    #[test]
    fn names_cannot_leave_the_root() {
        let v = Volumes::new(Path::new("/v"));
        for bad in ["..", "a/b", "", "../x", "A"] {
            assert!(matches!(v.dir("ns", bad), Err(VolumeError::BadName(_))), "{bad}");
            assert!(matches!(v.dir(bad, "c"), Err(VolumeError::BadName(_))), "{bad}");
        }
    }
}
