//! Helpers of the end-to-end tests that drive a whole [`Stack`] through its api.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use testkit::stack::Stack;

/// How long one job may take end to end (a real code-server start included).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends a command, expects 202 and waits for its job; returns the job.
pub fn run(stack: &Stack, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = stack.api(method, path, body).unwrap();
    assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
    stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap()
}

/// `GET path`, expecting 200; the JSON body.
pub fn get(stack: &Stack, path: &str) -> Value {
    let r = stack.api("GET", path, None).unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The top-level names [`write_files`] writes (code-server keeps its own state in the volume too,
/// and it changes while it runs).
pub const OURS: [&str; 5] = ["src", "big.bin", "empty-dir", "link-inside", "link-outside"];

/// What a tree holds under [`OURS`]: per relative path, a file's bytes or a symlink's target.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, Entry::Link(std::fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &path, out);
            } else if meta.is_file() {
                out.insert(rel, Entry::File(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out.retain(|p, _| OURS.iter().any(|top| p.starts_with(top)));
    out
}

/// 5 MiB that do not compress away (xorshift).
pub fn five_mb() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..5 * 1024 * 1024 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

pub fn volume(dir: &Path, id: &str) -> PathBuf {
    dir.join("volumes").join("workspaces").join(format!("ws-{id}-data"))
}

pub fn create(stack: &Stack, body: serde_json::Value) -> (String, serde_json::Value) {
    let r = stack.api("POST", "/session/create", Some(&body)).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["uuid"].as_str().unwrap().to_owned();
    (id, stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap())
}

/// Writes a nested folder, a 5 MB file, an empty folder and two symlinks (one inside the
/// volume, one to outside it) into the volume `vol`; what [`tree`] then sees.
pub fn write_files(vol: &Path) -> BTreeMap<PathBuf, Entry> {
    std::fs::create_dir_all(vol.join("src/deep/er")).unwrap();
    std::fs::write(vol.join("src/deep/er/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(vol.join("big.bin"), five_mb()).unwrap();
    std::fs::create_dir_all(vol.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("src/deep/er/main.rs", vol.join("link-inside")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", vol.join("link-outside")).unwrap();
    let files = tree(vol);
    assert_eq!(files.len(), 8, "{:?}", files.keys().collect::<Vec<_>>());
    files
}
