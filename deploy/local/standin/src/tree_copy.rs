//! A recursive copy of one directory tree, for volume snapshots (see `volumes.rs`): regular
//! files byte for byte with their permission bits, symlinks as symlinks (their target is not
//! followed or checked), directories with their permission bits (set after their contents,
//! so a read-only directory can still be filled). Other file types (sockets, FIFOs, devices)
//! are skipped.

use std::io;
use std::path::Path;

/// Copies the tree at `from` to `to`, which must not exist yet.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            // `fs::copy` keeps the permission bits.
            std::fs::copy(&src, &dst)?;
        }
    }
    std::fs::set_permissions(to, meta.permissions())
}

/// Copies `from` to `to` through `<to's parent>/.<to's name>.partial`, renamed into place
/// once complete, so `to` is never seen half copied; any older `to` is replaced.
pub fn copy_tree_atomically(from: &Path, to: &Path) -> io::Result<()> {
    let name = to.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = to.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
    std::fs::create_dir_all(parent)?;
    let partial = parent.join(format!(".{}.partial", name.to_string_lossy()));
    remove_if_there(&partial)?;
    copy_tree(from, &partial)?;
    remove_if_there(to)?;
    std::fs::rename(&partial, to)
}

/// Removes the tree at `path`; a missing one is fine.
pub fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_symlinks_and_permissions_are_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(from.join("x/y")).unwrap();
        std::fs::write(from.join("x/y/f.bin"), [0u8, 1, 2, 255]).unwrap();
        std::fs::write(from.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(from.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("x/y/f.bin", from.join("link")).unwrap();
        std::os::unix::fs::symlink("/nowhere", from.join("dangling")).unwrap();
        copy_tree_atomically(&from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("x/y/f.bin")).unwrap(), [0u8, 1, 2, 255]);
        assert_eq!(std::fs::metadata(to.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o750);
        assert_eq!(std::fs::read_link(to.join("link")).unwrap(), Path::new("x/y/f.bin"));
        assert_eq!(std::fs::read_link(to.join("dangling")).unwrap(), Path::new("/nowhere"));
        assert!(!tmp.path().join(".b.partial").exists());
        // A second copy replaces the first.
        std::fs::write(from.join("new"), "n").unwrap();
        copy_tree_atomically(&from, &to).unwrap();
        assert!(to.join("new").exists());
    }
}
