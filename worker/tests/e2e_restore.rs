//! End to end, a backup restored into a new session (`restore_from`), with real
//! workspaces: redis-server + api + worker + the stand-in with its process kubelet, so the
//! backup and restore Jobs run their real programs over real volume directories and the
//! workspace is a real code-server. A session's files (a nested folder, a 5 MB file,
//! symlinks) survive delete → backup → create from it, byte for byte, by the time the new
//! workspace first answers; a truncated archive fails the create with the reason and no
//! workspace is ever started. Needs the pinned code-server that `make test` installs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2e_support::{JOB_TIMEOUT, get, hex, run};
use serde_json::json;
use sha2::{Digest, Sha256};
use testkit::stack::{Stack, StackConfig};

const NS: &str = "workspaces";
const USER: &str = "restore@example.com";

/// The top-level names this test writes (code-server keeps its own state in the volume too,
/// and it changes while it runs).
const OURS: [&str; 5] = ["src", "big.bin", "empty-dir", "link-inside", "link-outside"];

/// What a tree holds under [`OURS`]: per relative path, a file's bytes or a symlink's target.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
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
fn five_mb() -> Vec<u8> {
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

fn volume(dir: &Path, id: &str) -> PathBuf {
    dir.join("volumes").join(NS).join(format!("ws-{id}-data"))
}

fn create(stack: &Stack, body: serde_json::Value) -> (String, serde_json::Value) {
    let r = stack.api("POST", "/session/create", Some(&body)).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["uuid"].as_str().unwrap().to_owned();
    (id, stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap())
}

#[test]
fn a_deleted_sessions_files_come_back_byte_for_byte_and_a_truncated_archive_fails_the_create() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(StackConfig::real_workspaces(dir.path())).unwrap();

    // 1. A session with real files.
    let (old, created) = create(&stack, json!({ "user_id": USER }));
    assert_eq!(created["state"], "succeeded", "{created}\n{}", stack.logs());
    let vol = volume(dir.path(), &old);
    std::fs::create_dir_all(vol.join("src/deep/er")).unwrap();
    std::fs::write(vol.join("src/deep/er/main.rs"), b"fn main() {}\n").unwrap();
    std::fs::write(vol.join("big.bin"), five_mb()).unwrap();
    std::fs::create_dir_all(vol.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("src/deep/er/main.rs", vol.join("link-inside")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", vol.join("link-outside")).unwrap();
    let before = tree(&vol);
    assert_eq!(before.len(), 8, "{:?}", before.keys().collect::<Vec<_>>());

    // 2. Delete it: a verified archive.
    let deleted = run(&stack, "DELETE", &format!("/session/{old}"), None);
    assert_eq!(deleted["state"], "succeeded", "{deleted}\n{}", stack.logs());

    // 3. Listed with its size and checksum, which match the file.
    let listed = get(&stack, "/backups?user_id=restore%40example.com");
    assert_eq!(listed["count"], 1, "{listed}");
    let backup = &listed["backups"][0];
    assert_eq!(backup["state"], "succeeded", "{backup}");
    let zip = dir.path().join("volumes").join(NS).join("backup-pvc").join(backup["location"].as_str().unwrap());
    let bytes = std::fs::read(&zip).unwrap();
    assert_eq!(backup["size_bytes"].as_u64(), Some(bytes.len() as u64));
    assert!(bytes.len() > 5 * 1024 * 1024, "the 5 MB file is in the archive");
    assert_eq!(backup["sha256"].as_str(), Some(hex(&Sha256::digest(&bytes)).as_str()));
    let backup_id = backup["id"].as_str().unwrap().to_owned();

    // 4. A new session from it: when its create job succeeds, its code-server has just
    // answered its first readiness probe, and the volume already holds every file.
    let (new, created) = create(&stack, json!({ "user_id": USER, "restore_from": backup_id }));
    assert_eq!(created["state"], "succeeded", "{created}\n{}", stack.logs());
    assert_ne!(new, old);
    assert_eq!(tree(&volume(dir.path(), &new)), before, "byte for byte, symlinks as symlinks");
    let session = get(&stack, &format!("/session/{new}"));
    assert_eq!(
        (session["session"]["status"].as_str(), session["restore_from"].as_str()),
        (Some("running"), Some(backup_id.as_str()))
    );

    // A corrupted archive (truncated on disk): the create fails with the reason, the
    // session is `failed`, and no workspace was ever created for it.
    let file = std::fs::OpenOptions::new().write(true).open(&zip).unwrap();
    file.set_len(bytes.len() as u64 / 2).unwrap();
    let (broken, created) = create(&stack, json!({ "user_id": USER, "restore_from": backup_id }));
    assert_eq!(created["state"], "failed", "{created}\n{}", stack.logs());
    let why = created["error"].as_str().unwrap();
    assert!(why.contains(&format!("restore from backup {backup_id} failed")), "{why}");
    assert!(why.contains("the backup recorded"), "the size check names both sizes: {why}");
    let session = get(&stack, &format!("/session/{broken}"));
    assert_eq!(session["session"]["status"], "failed", "{session}");
    assert!(session["last_error"].as_str().unwrap().contains("the backup recorded"), "{session}");
    let deployment = stack.kube_get(&format!("/apis/apps/v1/namespaces/{NS}/deployments/ws-{broken}")).unwrap();
    assert_eq!(deployment.status, 404, "no workspace for a failed restore: {}", deployment.text());
    assert!(
        std::fs::read_dir(volume(dir.path(), &broken)).unwrap().next().is_none(),
        "nothing was written into the new volume"
    );
}
