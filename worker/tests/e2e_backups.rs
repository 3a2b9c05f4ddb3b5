//! End to end, backups with real workspaces: redis-server + api + worker + the stand-in with
//! its process kubelet, so the backup Job runs its real program over the session's real
//! volume directory. Files (a nested folder, a 5 MB file, symlinks) are written, the session
//! is deleted, and `GET /backups?user_id=` must list the backup with the size and SHA-256 of
//! the archive file on disk, which holds the files byte for byte and the symlinks as
//! symlinks; and a failed backup is listed as failed with its reason (simulated kubelet).
//! Needs the pinned code-server that `make test` installs first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_support::{get, hex};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::stack::{Stack, StackConfig};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const NS: &str = "workspaces";
const USER: &str = "backups@example.com";

fn run(stack: &Stack, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = stack.api(method, path, body).unwrap();
    assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
    let job = r.json()["job_id"].as_str().unwrap().to_owned();
    let v = stack.wait_job(&job, JOB_TIMEOUT).unwrap();
    assert_eq!(v["state"], "succeeded", "{method} {path}: {v}\n{}", stack.logs());
    r.json()
}

/// Every entry of the zip at `zip`, read with Python's `zipfile`: name, whether it is a
/// symlink, and its bytes (a symlink's bytes are its target).
fn entries(zip: &Path) -> Vec<(String, bool, Vec<u8>)> {
    let program = r#"import json, stat, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps([[i.filename, stat.S_ISLNK(i.external_attr >> 16), z.read(i).hex()] for i in z.infolist()]))"#;
    let out = std::process::Command::new("python3").args(["-c", program]).arg(zip).output().unwrap();
    assert!(out.status.success(), "reading {}: {}", zip.display(), String::from_utf8_lossy(&out.stderr));
    let v: Vec<(String, bool, String)> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|(name, link, data)| {
            let bytes = (0..data.len()).step_by(2).map(|i| u8::from_str_radix(&data[i..i + 2], 16).unwrap()).collect();
            (name, link, bytes)
        })
        .collect()
}

fn entry<'a>(all: &'a [(String, bool, Vec<u8>)], name: &str) -> &'a (String, bool, Vec<u8>) {
    all.iter()
        .find(|e| e.0 == name)
        .unwrap_or_else(|| panic!("{name} is in the archive: {:?}", all.iter().map(|e| &e.0).collect::<Vec<_>>()))
}

#[test]
fn a_deleted_session_lists_its_verified_backup_with_the_archives_size_and_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(StackConfig::real_workspaces(dir.path())).unwrap();
    let created = run(&stack, "POST", "/session/create", Some(&json!({ "user_id": USER })));
    let id = created["uuid"].as_str().unwrap().to_owned();

    // Files as a user leaves them: a nested folder, 5 MB of data, and symlinks (to a file
    // inside, to a folder, to outside the volume, and one dangling).
    let vol: PathBuf = dir.path().join("volumes").join(NS).join(format!("ws-{id}-data"));
    let nested = b"deep inside\n".to_vec();
    std::fs::create_dir_all(vol.join("src/deep/nested")).unwrap();
    std::fs::write(vol.join("src/deep/nested/notes.txt"), &nested).unwrap();
    let mut big = Vec::with_capacity(5 << 20);
    let mut x: u32 = 0x1234_5678;
    while big.len() < 5 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::create_dir_all(vol.join("data")).unwrap();
    std::fs::write(vol.join("data/big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("src/deep/nested/notes.txt", vol.join("notes-link")).unwrap();
    std::os::unix::fs::symlink("src/deep", vol.join("deep-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", vol.join("outside-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/gone", vol.join("dangling-link")).unwrap();

    run(&stack, "DELETE", &format!("/session/{id}"), None);

    let listed = get(&stack, "/backups?user_id=backups%40example.com");
    assert_eq!(listed["count"], 1, "{listed}\n{}", stack.logs());
    let b = &listed["backups"][0];
    assert_eq!(b["uuid"], id.as_str());
    assert_eq!(b["user_id"], USER);
    assert_eq!(b["kind"], "archive");
    assert_eq!(b["state"], "succeeded");
    let session = get(&stack, &format!("/session/{id}"));
    assert_eq!(b["location"], session["backup_file"], "the session still names its backup file");

    // The size and checksum are those of the file on the backup volume.
    let zip = dir.path().join("volumes").join(NS).join("backup-pvc").join(b["location"].as_str().unwrap());
    let bytes = std::fs::read(&zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
    assert_eq!(b["size_bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(b["sha256"].as_str(), Some(hex(&Sha256::digest(&bytes)).as_str()));
    assert!(bytes.len() > 5 << 20, "5 MB of random data does not compress");

    // Its files byte for byte; symlinks stored as symlinks, never followed.
    let all = entries(&zip);
    assert_eq!(entry(&all, "app/src/deep/nested/notes.txt").2, nested);
    assert!(entry(&all, "app/data/big.bin").2 == big, "the 5 MB file is intact");
    for (name, target) in [
        ("app/notes-link", "src/deep/nested/notes.txt"),
        ("app/deep-link", "src/deep"),
        ("app/outside-link", "/etc/passwd"),
        ("app/dangling-link", "/nonexistent/gone"),
    ] {
        let (_, link, data) = entry(&all, name);
        assert!(*link, "{name} is a symlink in the archive");
        assert_eq!(String::from_utf8_lossy(data), target, "{name}");
    }
    assert!(!all.iter().any(|e| e.0.starts_with("app/deep-link/")), "a linked folder is not descended into");

    // The same record by id and for the session.
    let bid = b["id"].as_str().unwrap();
    assert_eq!(get(&stack, &format!("/backups/{bid}")), *b);
    assert_eq!(get(&stack, &format!("/session/{id}/backups"))["backups"][0], *b);
}

/// A delete whose backup Job fails keeps the session (`failed`, volume kept) and lists the
/// backup as `failed` with the reason, so a user sees why there is no archive.
#[test]
fn a_failed_backup_is_listed_as_failed_with_its_reason() {
    let standin_env = vec![("STANDIN_FAIL_BACKUPS".to_owned(), "true".to_owned())];
    let stack = Stack::start(StackConfig { workers: 1, standin_env, ..Default::default() }).unwrap();
    let created = run(&stack, "POST", "/session/create", Some(&json!({ "user_id": USER })));
    let id = created["uuid"].as_str().unwrap().to_owned();
    let r = stack.api("DELETE", &format!("/session/{id}"), None).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let job = stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap();
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(get(&stack, &format!("/session/{id}"))["session"]["status"], "failed");

    let listed = get(&stack, "/backups?user_id=backups%40example.com");
    assert_eq!(listed["count"], 1, "{listed}");
    let b = &listed["backups"][0];
    assert_eq!(b["state"], "failed");
    assert_eq!((b["size_bytes"].as_u64(), b["sha256"].as_str()), (Some(0), Some("")));
    let why = b["error"].as_str().unwrap_or_default();
    assert!(why.contains("backup failed") && why.contains("volume kept"), "{b}");
    assert_eq!(b["uuid"], id.as_str());
}
