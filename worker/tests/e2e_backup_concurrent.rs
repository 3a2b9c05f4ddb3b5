//! End to end, ten deletes at once: redis-server + api + two workers (`WORKER_CONCURRENCY=10`
//! each, so every delete can run at the same time) + the stand-in with its process kubelet, so
//! each backup Job runs its real program over its session's real volume directory. Ten
//! sessions are created and put to sleep two at a time (at most two code-servers run at once
//! on a small machine; a sleeping session's delete starts no workspace), each gets files of
//! its own, then the ten DELETEs are sent together (all ten requests in flight at once).
//! Every delete gets its own verified backup: ten succeeded records for the user, ten distinct
//! locations, ten distinct archive files on the backup volume (nothing else there, no
//! `.partial` leftover) whose size and SHA-256 are the records' and which hold that session's
//! files, and every session ends `deleted`. How far the ten backup Jobs overlapped is printed
//! (from the Jobs' start and completion times in the stand-in, and from each archive's
//! birth and rename times on disk). Needs the pinned code-server that `make test` installs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, SystemTime};

use e2e_support::{get, hex};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::stack::{Stack, StackConfig};

const SESSIONS: usize = 10;
/// Sessions started at once (each is a real code-server until it sleeps).
const BATCH: usize = 2;
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
const NS: &str = "workspaces";
const USER: &str = "concurrent@example.com";
/// Incompressible bytes per session, so each backup does measurable work.
const DATA_BYTES: usize = 4 << 20;

fn stack(dir: &Path) -> Stack {
    let mut config = StackConfig::real_workspaces(dir);
    config.workers = 2;
    config.worker_env.push(("WORKER_CONCURRENCY".to_owned(), SESSIONS.to_string()));
    Stack::start(config).unwrap()
}

/// Sends one command per path at once; returns each response's job id.
fn send(stack: &Stack, method: &str, paths: &[String], body: Option<&Value>) -> Vec<Value> {
    let barrier = Barrier::new(paths.len());
    std::thread::scope(|s| {
        let sent: Vec<_> = paths
            .iter()
            .map(|path| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let r = stack.api(method, path, body).unwrap();
                    assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
                    r.json()
                })
            })
            .collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn wait_all(stack: &Stack, replies: &[Value], what: &str) {
    for r in replies {
        let job = stack.wait_job(r["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap();
        assert_eq!(job["state"], "succeeded", "{what}: {job}\n{}", stack.logs());
    }
}

/// `n` pseudo-random bytes from `seed` (xorshift: incompressible, different per seed).
fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::with_capacity(n + 4);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The bytes of `name` inside the zip at `zip` (Python's `zipfile`, which checks the CRC).
fn read_entry(zip: &Path, name: &str) -> Vec<u8> {
    let program = "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))";
    let out = std::process::Command::new("python3").args(["-c", program]).arg(zip).arg(name).output().unwrap();
    assert!(out.status.success(), "{name} in {}: {}", zip.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The most intervals open at one instant (an end at the same instant as a start counts first).
fn peak(intervals: &[(i128, i128)]) -> usize {
    let mut edges: Vec<(i128, i32)> = intervals.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    usize::try_from(most).unwrap_or(0)
}

/// How the intervals overlapped, for the test's output: the peak, and how long all ran together.
fn overlap(intervals: &[(i128, i128)]) -> String {
    let latest_start = intervals.iter().map(|i| i.0).max().unwrap_or(0);
    let earliest_end = intervals.iter().map(|i| i.1).min().unwrap_or(0);
    let first = intervals.iter().map(|i| i.0).min().unwrap_or(0);
    let last = intervals.iter().map(|i| i.1).max().unwrap_or(0);
    let longest = intervals.iter().map(|i| i.1 - i.0).max().unwrap_or(0);
    format!(
        "peak {} of {} at once; all together for {} ms; first start to last end {} ms (longest one {} ms)",
        peak(intervals),
        intervals.len(),
        (earliest_end - latest_start).max(0) / 1_000_000,
        (last - first) / 1_000_000,
        longest / 1_000_000,
    )
}

fn nanos(t: &Value) -> i128 {
    t.as_str().unwrap().parse::<jiff::Timestamp>().unwrap().as_nanosecond()
}

/// Start and completion of every backup Job, as the stand-in's kubelet recorded them.
fn job_intervals(stack: &Stack) -> Vec<(i128, i128)> {
    let r = stack.kube_get(&format!("/apis/batch/v1/namespaces/{NS}/jobs")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let jobs = r.json()["items"].as_array().cloned().unwrap_or_default();
    jobs.iter().map(|j| (nanos(&j["status"]["startTime"]), nanos(&j["status"]["completionTime"]))).collect()
}

fn since_epoch(t: SystemTime) -> i128 {
    i128::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

#[test]
fn ten_deletes_at_once_each_get_their_own_verified_backup() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path());
    let volumes = dir.path().join("volumes").join(NS);

    // Ten sleeping sessions with files of their own, started two at a time.
    let mut ids = Vec::new();
    for batch in 0..SESSIONS / BATCH {
        let create = vec!["/session/create".to_owned(); BATCH];
        let created = send(&stack, "POST", &create, Some(&json!({ "user_id": USER })));
        wait_all(&stack, &created, "create");
        let batch_ids: Vec<String> = created.iter().map(|c| c["uuid"].as_str().unwrap().to_owned()).collect();
        let sleep: Vec<String> = batch_ids.iter().map(|id| format!("/session/{id}/sleep")).collect();
        wait_all(&stack, &send(&stack, "POST", &sleep, None), "sleep");
        for (k, id) in batch_ids.iter().enumerate() {
            let vol = volumes.join(format!("ws-{id}-data"));
            std::fs::create_dir_all(vol.join("src")).unwrap();
            std::fs::write(vol.join("src/owner.txt"), id.as_bytes()).unwrap();
            std::fs::write(vol.join("data.bin"), noise(u32::try_from(batch * BATCH + k).unwrap(), DATA_BYTES)).unwrap();
        }
        ids.extend(batch_ids);
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), SESSIONS, "{ids:?}");

    // All ten deletes in flight at once.
    let deletes: Vec<String> = ids.iter().map(|id| format!("/session/{id}")).collect();
    let deleting = send(&stack, "DELETE", &deletes, None);
    wait_all(&stack, &deleting, "delete");

    // Ten succeeded backups for the user, one per session, each with its own location.
    let listed = get(&stack, "/backups?user_id=concurrent%40example.com&limit=100");
    assert_eq!(listed["count"], SESSIONS, "{listed}\n{}", stack.logs());
    assert_eq!(listed["next_cursor"], Value::Null, "{listed}");
    let backups = listed["backups"].as_array().unwrap();
    let by_session: BTreeMap<&str, &Value> = backups.iter().map(|b| (b["uuid"].as_str().unwrap(), b)).collect();
    assert_eq!(by_session.keys().copied().collect::<BTreeSet<_>>(), ids.iter().map(String::as_str).collect());
    let locations: BTreeSet<&str> = backups.iter().map(|b| b["location"].as_str().unwrap()).collect();
    assert_eq!(locations.len(), SESSIONS, "every backup has its own location: {listed}");

    // Exactly those ten files on the backup volume, each matching its record and its session.
    let backup_dir = volumes.join("backup-pvc");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&backup_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_disk, locations.iter().map(|l| (*l).to_owned()).collect(), "no other file, no .partial left");
    let mut checksums = BTreeSet::new();
    let mut written = Vec::new();
    for (id, b) in &by_session {
        assert_eq!((b["state"].as_str(), b["kind"].as_str()), (Some("succeeded"), Some("archive")), "{b}");
        assert_eq!(b["user_id"], USER);
        let zip = backup_dir.join(b["location"].as_str().unwrap());
        let bytes = std::fs::read(&zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
        assert_eq!(b["size_bytes"].as_u64(), Some(bytes.len() as u64), "{b}");
        let sha = hex(&Sha256::digest(&bytes));
        assert_eq!(b["sha256"].as_str(), Some(sha.as_str()), "{b}");
        checksums.insert(sha);
        assert_eq!(read_entry(&zip, "app/src/owner.txt"), id.as_bytes(), "{b}: the archive of its own session");
        let session = get(&stack, &format!("/session/{id}"));
        assert_eq!(session["session"]["status"], "deleted", "{session}");
        assert_eq!(session["backup_file"], b["location"], "{session}");
        let meta = std::fs::metadata(&zip).unwrap();
        if let Ok(born) = meta.created() {
            // Born as the `.partial` file, renamed (ctime) once written and verified.
            written.push((since_epoch(born), i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())));
        }
    }
    assert_eq!(checksums.len(), SESSIONS, "ten distinct archives");

    // How far they overlapped (printed; `--nocapture` shows it).
    let seconds: BTreeSet<&str> = locations.iter().map(|l| &l[l.len() - 19..l.len() - 4]).collect();
    println!("{SESSIONS} archive names, {} distinct timestamp seconds: {locations:?}", seconds.len());
    let jobs = job_intervals(&stack);
    assert_eq!(jobs.len(), SESSIONS, "one backup Job per delete");
    println!("backup Jobs (stand-in start/completion): {}", overlap(&jobs));
    if written.len() == SESSIONS {
        println!("archive files (birth to rename): {}", overlap(&written));
    }
    // Measured on a 2-core machine: all ten at once. Half is the bar, so a loaded machine passes.
    assert!(peak(&jobs) >= SESSIONS / 2, "the backups ran side by side, not one after another: {}", overlap(&jobs));
}
