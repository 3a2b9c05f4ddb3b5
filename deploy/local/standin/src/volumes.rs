//! PersistentVolumeClaims as local directories, for the process kubelet: the claim `c` in
//! namespace `ns` is the directory `<root>/<ns>/<c>`, created on first use (a pod mounting
//! it, or the claim being seen) and removed with everything in it when the claim is deleted.
//!
//! A VolumeSnapshot `s` of a claim is a copy of the claim's directory at
//! `<root>/.snapshots/<ns>/<s>` (see `tree_copy.rs`; a snapshot name cannot be `.snapshots`'s
//! sibling claim because object names cannot start with `.`). A claim restored from a
//! snapshot gets the snapshot's files copied into its directory when the directory is made.
//!
//! Names are checked to be DNS labels/subdomains before they become path parts, so no
//! object name can point outside the root.

use crate::tree_copy;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

/// The directory under the root that holds snapshots.
const SNAPSHOTS: &str = ".snapshots";

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

impl Volumes {
    /// The directory of snapshot `snapshot` in `ns` (not created).
    pub fn snapshot_dir(&self, ns: &str, snapshot: &str) -> Result<PathBuf, VolumeError> {
        let claim_like = self.dir(ns, snapshot)?;
        let rel = claim_like.strip_prefix(&self.root).unwrap_or(&claim_like).to_path_buf();
        Ok(self.root.join(SNAPSHOTS).join(rel))
    }

    /// Copies the directory of `claim` to snapshot `snapshot` (replacing an older copy). A claim
    /// whose directory is not made yet cannot be snapshotted.
    pub fn take_snapshot(&self, ns: &str, claim: &str, snapshot: &str) -> Result<PathBuf, VolumeError> {
        let from = self.dir(ns, claim)?;
        let to = self.snapshot_dir(ns, snapshot)?;
        if !from.is_dir() {
            let source = io::Error::new(io::ErrorKind::NotFound, "the claim's directory is not made yet");
            return Err(VolumeError::Io { path: from, source });
        }
        tree_copy::copy_tree_atomically(&from, &to).map_err(|source| VolumeError::Io { path: to.clone(), source })?;
        Ok(to)
    }

    /// Makes the directory of `claim` as a copy of snapshot `snapshot`; `Ok(None)` (and nothing
    /// made) when that snapshot has no copy here. An existing claim directory is kept as it is.
    pub fn restore(&self, ns: &str, claim: &str, snapshot: &str) -> Result<Option<PathBuf>, VolumeError> {
        let to = self.dir(ns, claim)?;
        let from = self.snapshot_dir(ns, snapshot)?;
        if to.exists() {
            return Ok(Some(to));
        }
        if !from.is_dir() {
            return Ok(None);
        }
        tree_copy::copy_tree_atomically(&from, &to).map_err(|source| VolumeError::Io { path: to.clone(), source })?;
        Ok(Some(to))
    }

    /// Removes every snapshot copy not in `keep` (namespace, snapshot name).
    pub fn prune_snapshots(&self, keep: &HashSet<(String, String)>) -> Result<(), VolumeError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VolumeError::Io { path, source }
        };
        let root = self.root.join(SNAPSHOTS);
        let Ok(namespaces) = std::fs::read_dir(&root) else { return Ok(()) };
        for ns in namespaces {
            let ns = ns.map_err(io_err(&root))?;
            let Ok(snapshots) = std::fs::read_dir(ns.path()) else { continue };
            for snap in snapshots {
                let snap = snap.map_err(io_err(&ns.path()))?;
                let key =
                    (ns.file_name().to_string_lossy().into_owned(), snap.file_name().to_string_lossy().into_owned());
                // `.name.partial` copies in progress belong to no snapshot either.
                if !keep.contains(&key) {
                    tracing::info!(ns = %key.0, snapshot = %key.1, "snapshot deleted: removing its copy");
                    tree_copy::remove_if_there(&snap.path()).map_err(io_err(&snap.path()))?;
                }
            }
        }
        Ok(())
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
    fn a_restored_claim_has_the_snapshot_files_and_not_later_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let v = Volumes::new(tmp.path());
        let src = v.ensure("w", "data").unwrap();
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::write(src.join("d/e/f.txt"), "before").unwrap();
        std::os::unix::fs::symlink("d/e/f.txt", src.join("link")).unwrap();
        assert!(v.restore("w", "copy", "s1").unwrap().is_none(), "no snapshot yet: nothing made");
        assert!(!v.dir("w", "copy").unwrap().exists());

        let snap = v.take_snapshot("w", "data", "s1").unwrap();
        assert_eq!(snap, tmp.path().join(".snapshots/w/s1"));
        std::fs::write(src.join("d/e/f.txt"), "after").unwrap();
        std::fs::write(src.join("later.txt"), "x").unwrap();

        let copy = v.restore("w", "copy", "s1").unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(copy.join("d/e/f.txt")).unwrap(), "before");
        assert_eq!(std::fs::read_link(copy.join("link")).unwrap(), Path::new("d/e/f.txt"));
        assert_eq!(std::fs::read_to_string(copy.join("link")).unwrap(), "before");
        assert!(!copy.join("later.txt").exists());

        v.prune_snapshots(&HashSet::new()).unwrap();
        assert!(!snap.exists());
        assert!(copy.join("d/e/f.txt").exists(), "a restored claim outlives its snapshot");
        assert!(v.take_snapshot("w", "nope", "s2").is_err(), "a claim without a directory");
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
