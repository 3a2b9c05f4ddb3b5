//! End to end, snapshot mode (`BACKUP_MODE=snapshot`) with real workspaces: redis-server +
//! api + worker + the stand-in with its process kubelet, which makes a VolumeSnapshot ready by
//! copying the claim's directory and fills a claim whose `dataSourceRef` names a snapshot from
//! that copy. A session's files (a nested folder, a 5 MB file, symlinks) survive delete →
//! snapshot → create from it, byte for byte, by the time the new code-server first answers;
//! no Job runs and the backup volume is never touched. A snapshot that vanished fails the
//! create with the reason; a backup deleted by its user has its VolumeSnapshot deleted by
//! retention. Needs the pinned code-server that `make test` installs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::time::Duration;

use e2e_support::{create, get, run, tree, volume, write_files};
use serde_json::json;
use testkit::stack::{Stack, StackConfig, calls_file, wait_until};

const NS: &str = "/namespaces/workspaces";
const USER: &str = "snapshot@example.com";

#[test]
fn a_deleted_sessions_snapshot_brings_its_files_back_and_retention_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StackConfig::real_workspaces(dir.path());
    config.record_calls = Some(calls_file("e2e-snapshot").unwrap());
    config.worker_env.extend([
        ("BACKUP_MODE".to_owned(), "snapshot".to_owned()),
        ("BACKUP_SNAPSHOT_CLASS".to_owned(), "workspace-snapshots".to_owned()),
        // Retention runs a pass every second, so a user's delete is carried out promptly.
        ("BACKUP_PRUNE_INTERVAL_SECS".to_owned(), "1".to_owned()),
    ]);
    let stack = Stack::start(config).unwrap();

    // 1. A session with real files.
    let (old, created) = create(&stack, json!({ "user_id": USER }));
    assert_eq!(created["state"], "succeeded", "{created}\n{}", stack.logs());
    let before = write_files(&volume(dir.path(), &old));

    // 2. Delete it: a ready VolumeSnapshot, then the volume goes.
    let deleted = run(&stack, "DELETE", &format!("/session/{old}"), None);
    assert_eq!(deleted["state"], "succeeded", "{deleted}\n{}", stack.logs());
    let pvc = stack.kube_get(&format!("/api/v1{NS}/persistentvolumeclaims/ws-{old}-data")).unwrap();
    assert_eq!(pvc.status, 404, "the volume is deleted once the snapshot is ready");

    // 3. Listed as a snapshot: its name, its restoreSize, no checksum (there is no archive).
    let listed = get(&stack, "/backups?user_id=snapshot%40example.com");
    assert_eq!(listed["count"], 1, "{listed}");
    let backup = &listed["backups"][0];
    assert_eq!((backup["state"].as_str(), backup["kind"].as_str()), (Some("succeeded"), Some("snapshot")), "{backup}");
    let snap_name = backup["location"].as_str().unwrap().to_owned();
    assert!(snap_name.starts_with(&format!("ws-{old}-snap-g")), "{backup}");
    assert_eq!(backup["size_bytes"].as_u64(), Some(5 << 30), "the claim's 5Gi: {backup}");
    let snap = stack.kube_get(&format!("/apis/snapshot.storage.k8s.io/v1{NS}/volumesnapshots/{snap_name}")).unwrap();
    assert_eq!(snap.status, 200, "{}", snap.text());
    let snap = snap.json();
    assert_eq!(snap["spec"]["source"]["persistentVolumeClaimName"], format!("ws-{old}-data"));
    assert_eq!(snap["spec"]["volumeSnapshotClassName"], "workspace-snapshots");
    assert_eq!(snap["status"]["readyToUse"], true);
    let jobs = stack.kube_get(&format!("/apis/batch/v1{NS}/jobs")).unwrap().json();
    assert_eq!(jobs["items"].as_array().map(Vec::len), Some(0), "no Job in snapshot mode: {jobs}");
    let backup_id = backup["id"].as_str().unwrap().to_owned();

    // 4. A new session from it: its volume is made from the snapshot, and when its create
    // job succeeds (code-server answered) every file is there.
    let (new, created) = create(&stack, json!({ "user_id": USER, "restore_from": backup_id }));
    assert_eq!(created["state"], "succeeded", "{created}\n{}", stack.logs());
    assert_eq!(tree(&volume(dir.path(), &new)), before, "byte for byte, symlinks as symlinks");
    let claim = stack.kube_get(&format!("/api/v1{NS}/persistentvolumeclaims/ws-{new}-data")).unwrap().json();
    assert_eq!(
        claim["spec"]["dataSourceRef"],
        json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap_name})
    );
    let session = get(&stack, &format!("/session/{new}"));
    assert_eq!(session["session"]["status"], "running", "{session}");

    // A snapshot deleted behind our back: the create fails with the reason and no volume or
    // workspace is made for it.
    let r = stack.kube_delete(&format!("/apis/snapshot.storage.k8s.io/v1{NS}/volumesnapshots/{snap_name}")).unwrap();
    assert!(r.status == 200 || r.status == 202, "{}", r.text());
    let (broken, created) = create(&stack, json!({ "user_id": USER, "restore_from": backup_id }));
    assert_eq!(created["state"], "failed", "{created}\n{}", stack.logs());
    let why = created["error"].as_str().unwrap();
    assert!(why.contains(&format!("restore from backup {backup_id} failed")), "{why}");
    assert!(why.contains("VolumeSnapshot no longer exists"), "{why}");
    for path in [
        format!("/api/v1{NS}/persistentvolumeclaims/ws-{broken}-data"),
        format!("/apis/apps/v1{NS}/deployments/ws-{broken}"),
    ] {
        assert_eq!(stack.kube_get(&path).unwrap().status, 404, "nothing made for a failed restore: {path}");
    }

    // 5. The user deletes the new session's own backup: retention deletes its VolumeSnapshot.
    let deleted = run(&stack, "DELETE", &format!("/session/{new}"), None);
    assert_eq!(deleted["state"], "succeeded", "{deleted}\n{}", stack.logs());
    let of_new = get(&stack, &format!("/session/{new}/backups"));
    let second = of_new["backups"][0].clone();
    assert_eq!(second["kind"], "snapshot", "{of_new}");
    let second_snap = second["location"].as_str().unwrap().to_owned();
    let path = format!("/apis/snapshot.storage.k8s.io/v1{NS}/volumesnapshots/{second_snap}");
    assert_eq!(stack.kube_get(&path).unwrap().status, 200);
    let second_id = second["id"].as_str().unwrap();
    let r = stack.api("DELETE", &format!("/backups/{second_id}"), None).unwrap();
    assert!(r.status < 300, "{}", r.text());
    let removed = wait_until(Duration::from_secs(30), || {
        let b = get(&stack, &format!("/backups/{second_id}"));
        (stack.kube_get(&path).ok()?.status == 404 && !b["removed_at"].is_null()).then_some(b)
    });
    let removed = removed.unwrap_or_else(|| panic!("the snapshot was not deleted by retention\n{}", stack.logs()));
    assert_eq!((removed["state"].as_str(), removed["deleted_reason"].as_str()), (Some("deleted"), Some("user")));
    // The stand-in's kubelet drops its copy on its next pass.
    let copy = dir.path().join("volumes").join(".snapshots").join("workspaces").join(&second_snap);
    let gone = wait_until(Duration::from_secs(10), || (!copy.exists()).then_some(()));
    assert!(gone.is_some(), "the stand-in's copy went with the snapshot");
}
