//! Backup retention against a real redis-server and the in-process
//! Kubernetes fake (with the simulated kubelet finishing Jobs), on a
//! controlled clock: a pass asks one prune Job to remove exactly the planned
//! files, marks exactly the planned records (with their reason) only after
//! the Job succeeded, marks nothing when it failed, and a later pass prunes
//! what aged out meanwhile. One worker prunes per interval (the lock).
#![allow(clippy::unwrap_used)]

mod k8s_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_support::Cluster;
use proto_types::keys;
use redis::aio::MultiplexedConnection;
use worker::clock::ManualClock;
use worker::k8s::backup::{JobOutcome, outcome};
use worker::k8s::prune;
use worker::sweeper::retention::{DAY_MS, RetentionPolicy};
use worker::sweeper::{PruneConfig, Pruner};

const T0: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

/// A backup record and its indexes, as the finish script writes them.
async fn backup(c: &mut MultiplexedConnection, id: &str, user: &str, session: &str, age_ms: u64, state: &str) {
    let created = T0 - age_ms;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys::backup(id))
        .arg(&[
            ("id", id),
            ("session_id", session),
            ("user_id", user),
            ("kind", "archive"),
            ("location", &format!("{id}.zip")),
            ("size_bytes", "10"),
            ("sha256", ""),
            ("state", state),
            ("error", ""),
        ])
        .arg("created_at_ms")
        .arg(created)
        .ignore()
        .cmd("ZADD")
        .arg(keys::user_backups(user))
        .arg(created)
        .arg(id)
        .ignore()
        .cmd("ZADD")
        .arg(keys::session_backups(session))
        .arg(created)
        .arg(id)
        .ignore()
        .query_async(c)
        .await
        .unwrap();
}

async fn session(c: &mut MultiplexedConnection, id: &str, status: &str, transition: &str) {
    let _: () = redis::cmd("HSET")
        .arg(keys::session(id))
        .arg(&[("status", status), ("user_id", "bob"), ("last_transition", transition)])
        .query_async(c)
        .await
        .unwrap();
}

/// `id -> (state, deleted_reason, removed_at_ms)` of every record.
async fn records(c: &mut MultiplexedConnection, ids: &[&str]) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    for id in ids {
        let (s, r, at): (Option<String>, Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(keys::backup(id))
            .arg(&["state", "deleted_reason", "removed_at_ms"])
            .query_async(c)
            .await
            .unwrap();
        out.insert((*id).to_owned(), (s.unwrap_or_default(), r.unwrap_or_default(), at.unwrap_or_default()));
    }
    out
}

const ALL: [&str; 10] = ["a-old", "a-1", "a-2", "a-3", "g-1", "a-fail", "a-pend", "b-1", "b-user", "b-2"];

/// alice: succeeded a-old (31 d), a-1 (5 d), a-2 (2 d), a-3 (1 d), g-1 (10 d, the only backup of
/// session `sgone`, whose record expired), failed a-fail (40 d), pending a-pend (100 d).
/// bob: b-1 (29 d, newest of session `sdel`, deleted 29 d ago), b-user (deleted by bob), b-2 (1 h).
async fn seed(c: &mut MultiplexedConnection) {
    backup(c, "a-old", "alice", "sa1", 31 * DAY_MS, "succeeded").await;
    backup(c, "a-1", "alice", "sa2", 5 * DAY_MS, "succeeded").await;
    backup(c, "a-2", "alice", "sa3", 2 * DAY_MS, "succeeded").await;
    backup(c, "a-3", "alice", "sa3", DAY_MS, "succeeded").await;
    backup(c, "g-1", "alice", "sgone", 10 * DAY_MS, "succeeded").await;
    backup(c, "a-fail", "alice", "sa4", 40 * DAY_MS, "failed").await;
    backup(c, "a-pend", "alice", "sa4", 100 * DAY_MS, "pending").await;
    backup(c, "b-1", "bob", "sdel", 29 * DAY_MS, "succeeded").await;
    backup(c, "b-user", "bob", "sb2", HOUR, "deleted").await;
    backup(c, "b-2", "bob", "sb3", HOUR, "succeeded").await;
    for live in ["sa1", "sa2", "sa3", "sa4", "sb2", "sb3"] {
        session(c, live, "sleeping", "").await;
    }
    session(c, "sdel", "deleted", &format!("deleting deleted api {}", T0 - 29 * DAY_MS)).await;
}

fn pruner(server: &testkit::RedisServer, cluster: &Cluster, clock: &ManualClock, owner: &str) -> Pruner {
    let config = PruneConfig {
        policy: RetentionPolicy { keep_per_user: 2, max_age_ms: 30 * DAY_MS },
        interval: Duration::from_secs(3600),
    };
    let k8s = k8s_support::config();
    Pruner::new(server.client(), cluster.raw.clone(), k8s, config, Arc::new(clock.clone()), owner.to_owned()).unwrap()
}

async fn job_files(cluster: &Cluster, name: &str) -> (Vec<String>, JobOutcome) {
    let job = cluster.api::<Job>().get(name).await.unwrap();
    (prune::files_of(&job), outcome(&job))
}

fn unchanged(all: &BTreeMap<String, (String, String, String)>, id: &str) -> bool {
    let (_, reason, at) = &all[id];
    reason.is_empty() && at.is_empty()
}

#[tokio::test]
async fn a_pass_removes_exactly_the_planned_files_then_marks_and_a_failed_job_marks_nothing() {
    let server = testkit::RedisServer::start().unwrap();
    let mut c = server.client().get_multiplexed_async_connection().await.unwrap();
    seed(&mut c).await;
    let cluster = Cluster::start().await;
    let clock = ManualClock::at(T0);
    let p = pruner(&server, &cluster, &clock, "w1");
    let expected_files =
        ["a-fail.zip", ".a-fail.zip.partial", "a-old.zip", "a-1.zip", "b-user.zip"].map(str::to_owned).to_vec();

    // 1. The prune Job fails: nothing is marked.
    cluster.kubelet.set_fail_backups(true);
    let report = p.prune_once().await.unwrap().expect("w1 holds the lock");
    assert_eq!(report.read, ALL.len());
    assert!(report.marked.is_empty() && report.jobs.is_empty(), "{report:?}");
    let failed = prune::job_name(T0, 0);
    assert_eq!(report.failed_jobs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), vec![failed.clone()]);
    let (files, out) = job_files(&cluster, &failed).await;
    assert_eq!(files, expected_files);
    assert!(matches!(out, JobOutcome::Failed(_)));
    let all = records(&mut c, &ALL).await;
    assert!(ALL.iter().all(|id| unchanged(&all, id)), "{all:?}");
    assert_eq!(all["b-user"].0, "deleted");
    assert_eq!(all["a-old"].0, "succeeded");

    // Another worker does not prune in the same interval.
    assert_eq!(pruner(&server, &cluster, &clock, "w2").prune_once().await.unwrap(), None);

    // 2. Next pass (a millisecond later: its own Job name), the Job succeeds.
    cluster.kubelet.set_fail_backups(false);
    clock.advance_ms(1);
    let report = p.prune_unlocked().await.unwrap();
    let ok = prune::job_name(T0 + 1, 0);
    assert_eq!(report.jobs, vec![ok.clone()]);
    assert!(report.failed_jobs.is_empty());
    let (files, out) = job_files(&cluster, &ok).await;
    assert_eq!(files, expected_files);
    assert_eq!(out, JobOutcome::Succeeded);
    let marked: Vec<(&str, &str)> = report.marked.iter().map(|(id, r)| (id.as_str(), r.as_str())).collect();
    assert_eq!(marked, vec![("a-fail", "max_age"), ("a-old", "max_age"), ("a-1", "keep_per_user"), ("b-user", "user")]);
    let all = records(&mut c, &ALL).await;
    let removed_at = (T0 + 1).to_string();
    for (id, reason) in [("a-fail", "max_age"), ("a-old", "max_age"), ("a-1", "keep_per_user"), ("b-user", "user")] {
        assert_eq!(all[id], ("deleted".into(), reason.into(), removed_at.clone()), "{id}");
    }
    // Kept: the newest two of alice, g-1 (newest of a session deleted 10 d ago, over the limit),
    // the pending one, b-1 (newest of sdel, deleted 29 d ago) and b-2.
    for id in ["a-2", "a-3", "g-1", "a-pend", "b-1", "b-2"] {
        assert!(unchanged(&all, id), "{id}: {:?}", all[id]);
    }
    assert_eq!(all["a-pend"].0, "pending");

    // A pass right after has nothing left to do: no Job.
    clock.advance_ms(1);
    let again = p.prune_unlocked().await.unwrap();
    assert!(again.marked.is_empty() && again.jobs.is_empty() && again.failed_jobs.is_empty(), "{again:?}");
    assert!(cluster.api::<Job>().get_opt(&prune::job_name(T0 + 2, 0)).await.unwrap().is_none());

    // 3. Two days later sdel was deleted 31 d ago and b-1 is 31 d old: it goes; g-1 stays protected.
    clock.advance_ms(2 * DAY_MS);
    let later = p.prune_unlocked().await.unwrap();
    let marked: Vec<(&str, &str)> = later.marked.iter().map(|(id, r)| (id.as_str(), r.as_str())).collect();
    assert_eq!(marked, vec![("b-1", "max_age")]);
    let (files, _) = job_files(&cluster, &later.jobs[0]).await;
    assert_eq!(files, vec!["b-1.zip".to_owned()]);
    let all = records(&mut c, &ALL).await;
    assert_eq!(all["b-1"], ("deleted".into(), "max_age".into(), (T0 + 2 + 2 * DAY_MS).to_string()));
    for id in ["a-2", "a-3", "g-1", "a-pend", "b-2"] {
        assert!(unchanged(&all, id), "{id}: {:?}", all[id]);
    }
}

#[tokio::test]
async fn more_than_forty_files_go_in_several_jobs_each_of_at_most_forty() {
    let server = testkit::RedisServer::start().unwrap();
    let mut c = server.client().get_multiplexed_async_connection().await.unwrap();
    let ids: Vec<String> = (0..45).map(|i| format!("u-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        backup(&mut c, id, "carol", "sc", HOUR + i as u64, "deleted").await;
    }
    session(&mut c, "sc", "sleeping", "").await;
    let cluster = Cluster::start().await;
    let clock = ManualClock::at(T0);
    let report = pruner(&server, &cluster, &clock, "w1").prune_unlocked().await.unwrap();
    assert_eq!(report.jobs, vec![prune::job_name(T0, 0), prune::job_name(T0, 1)]);
    assert_eq!(job_files(&cluster, &report.jobs[0]).await.0.len(), prune::MAX_FILES);
    assert_eq!(job_files(&cluster, &report.jobs[1]).await.0.len(), 5);
    assert_eq!(report.marked.len(), 45);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let all = records(&mut c, &refs).await;
    assert!(all.values().all(|(s, r, _)| s == "deleted" && r == "user"));
}
