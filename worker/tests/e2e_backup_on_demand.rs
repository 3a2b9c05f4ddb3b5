//! End to end, on-demand backups (`POST /session/{uuid}/backup`) with a real workspace:
//! redis-server + api + worker + the stand-in with its process kubelet, so the backup Job
//! runs its real program over the session's real volume directory. A running session is
//! refused (409: its files may be changing); once asleep, two backups in a row each get
//! their own verified archive (distinct names even within one second), the session stays
//! asleep, and a failed backup fails the job but not the session. Needs the pinned
//! code-server that `make test` installs first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::path::Path;

use e2e_support::{JOB_TIMEOUT, get, hex, run};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::stack::{Stack, StackConfig};

const NS: &str = "workspaces";
const USER: &str = "on-demand@example.com";

/// The bytes of `name` inside the zip at `zip` (read with Python's `zipfile`, which also
/// checks the entry's CRC).
fn read_entry(zip: &Path, name: &str) -> Vec<u8> {
    let program = "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))";
    let out = std::process::Command::new("python3").args(["-c", program]).arg(zip).arg(name).output().unwrap();
    assert!(out.status.success(), "{name} in {}: {}", zip.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_sleeping_session_is_backed_up_on_demand_and_stays_asleep() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(StackConfig::real_workspaces(dir.path())).unwrap();
    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": USER }))).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["uuid"].as_str().unwrap().to_owned();
    let created = stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap();
    assert_eq!(created["state"], "succeeded", "{created}\n{}", stack.logs());

    let vol = dir.path().join("volumes").join(NS).join(format!("ws-{id}-data"));
    std::fs::create_dir_all(vol.join("src/nested")).unwrap();
    std::fs::write(vol.join("src/nested/notes.txt"), b"first version\n").unwrap();

    // Running: refused, nothing queued, nothing recorded.
    let refused = stack.api("POST", &format!("/session/{id}/backup"), None).unwrap();
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "invalid_state", "{}", refused.text());
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("running"), "{}", refused.text());
    assert_eq!(get(&stack, &format!("/session/{id}/backups"))["count"], 0);

    let slept = run(&stack, "POST", &format!("/session/{id}/sleep"), None);
    assert_eq!(slept["state"], "succeeded", "{slept}");

    // Two backups back to back (well within one second of each other, often).
    let first = run(&stack, "POST", &format!("/session/{id}/backup"), None);
    assert_eq!(first["state"], "succeeded", "{first}\n{}", stack.logs());
    assert_eq!(first["command"], "backup");
    std::fs::write(vol.join("src/nested/notes.txt"), b"second version\n").unwrap();
    let second = run(&stack, "POST", &format!("/session/{id}/backup"), None);
    assert_eq!(second["state"], "succeeded", "{second}\n{}", stack.logs());

    let session = get(&stack, &format!("/session/{id}"));
    assert_eq!(session["session"]["status"], "sleeping", "{session}");
    assert_eq!(session["backup_file"], Value::Null, "only a delete names the session's backup file: {session}");

    let listed = get(&stack, &format!("/session/{id}/backups"));
    assert_eq!(listed["count"], 2, "{listed}");
    let backups = listed["backups"].as_array().unwrap();
    let locations: Vec<&str> = backups.iter().map(|b| b["location"].as_str().unwrap()).collect();
    assert_ne!(locations[0], locations[1], "each backup has its own file");
    for (b, want) in backups.iter().zip([&b"first version\n"[..], b"second version\n"]) {
        assert_eq!((b["state"].as_str(), b["kind"].as_str()), (Some("succeeded"), Some("archive")), "{b}");
        assert_eq!(b["uuid"], id.as_str());
        let zip = dir.path().join("volumes").join(NS).join("backup-pvc").join(b["location"].as_str().unwrap());
        let bytes = std::fs::read(&zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
        assert_eq!(b["size_bytes"].as_u64(), Some(bytes.len() as u64), "{b}");
        assert_eq!(b["sha256"].as_str(), Some(hex(&Sha256::digest(&bytes)).as_str()), "{b}");
        assert_eq!(read_entry(&zip, "app/src/nested/notes.txt"), want, "{b}: the file as it was at its backup");
    }

    // The session wakes with its files as they are.
    let woke = run(&stack, "POST", &format!("/session/{id}/wake"), None);
    assert_eq!(woke["state"], "succeeded", "{woke}");
    assert_eq!(std::fs::read(vol.join("src/nested/notes.txt")).unwrap(), b"second version\n");
}

/// A backup that fails is the job's failure, recorded as a `failed` backup with the reason;
/// the session stays asleep and usable (simulated kubelet: no code-server needed).
#[test]
fn a_failed_on_demand_backup_fails_the_job_not_the_session() {
    let standin_env = vec![("STANDIN_FAIL_BACKUPS".to_owned(), "true".to_owned())];
    let stack = Stack::start(StackConfig { workers: 1, standin_env, ..Default::default() }).unwrap();
    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": USER }))).unwrap();
    let id = r.json()["uuid"].as_str().unwrap().to_owned();
    assert_eq!(stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap()["state"], "succeeded");
    assert_eq!(run(&stack, "POST", &format!("/session/{id}/sleep"), None)["state"], "succeeded");

    let job = run(&stack, "POST", &format!("/session/{id}/backup"), None);
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("stays asleep"), "{job}");
    let session = get(&stack, &format!("/session/{id}"));
    assert_eq!(session["session"]["status"], "sleeping", "{session}");

    let listed = get(&stack, &format!("/session/{id}/backups"));
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["backups"][0]["state"], "failed", "{listed}");

    // Still usable: it wakes.
    assert_eq!(run(&stack, "POST", &format!("/session/{id}/wake"), None)["state"], "succeeded");
}
