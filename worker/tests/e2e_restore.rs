//! End to end, a backup restored into a new session (`restore_from`), with real
//! workspaces: redis-server + api + worker + the stand-in with its process kubelet, so the
//! backup and restore Jobs run their real programs over real volume directories and the
//! workspace is a real code-server. A session's files (a nested folder, a 5 MB file,
//! symlinks) survive delete → backup → create from it, byte for byte, by the time the new
//! workspace first answers; a truncated archive fails the create with the reason and no
//! workspace is ever started. Needs the pinned code-server that `make test` installs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use e2e_support::{create, get, hex, run, tree, volume, write_files};
use serde_json::json;
use sha2::{Digest, Sha256};
use testkit::stack::{Stack, StackConfig};

const NS: &str = "workspaces";
const USER: &str = "restore@example.com";

#[test]
fn a_deleted_sessions_files_come_back_byte_for_byte_and_a_truncated_archive_fails_the_create() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(StackConfig::real_workspaces(dir.path())).unwrap();

    // 1. A session with real files.
    let (old, created) = create(&stack, json!({ "user_id": USER }));
    assert_eq!(created["state"], "succeeded", "{created}\n{}", stack.logs());
    let before = write_files(&volume(dir.path(), &old));

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
