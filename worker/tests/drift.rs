//! Drift repair against an in-process fake cluster and a real redis-server:
//! a Deployment deleted behind the worker's back is recreated within one
//! resync (origin `drift`), an emptied cluster gets running and sleeping
//! sessions back (the sleeping one at 0 replicas), a running session whose
//! pod stays not ready past `READY_TIMEOUT` gets a converge job (and none
//! before), and an orphan is reported (with an `orphaned` notice), not
//! deleted; with `RESYNC_DELETE_ORPHANS` it is, its PVC only after the
//! backup Job succeeded (a failed backup keeps it).
#![allow(clippy::unwrap_used)]

mod k8s_support;
mod queue_support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job as BatchJob;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_support::{Cluster, sid, target};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use proto_types::{Command, DesiredState, Job, Notice, NoticeKind, Origin, keys};
use queue_support::{config, connect, eventually};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use worker::clock::ManualClock;
use worker::k8s::backup::{JobOutcome, outcome};
use worker::runner::Runner;
use worker::sweeper::drift::{Kind, Listed};
use worker::sweeper::reap::Reaper;
use worker::sweeper::{Resync, Store};

const T0: u64 = 1_700_000_000_000;

/// A session as Redis holds it once converged to `status`.
async fn seed(conn: &mut MultiplexedConnection, id: &str, status: &str) {
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys::session(id))
        .arg(&[
            ("user_id", "user@example.com"),
            ("status", status),
            ("desired", status),
            ("generation", "1"),
            ("fence", "0"),
            ("workspace_url", "https://vs-code.example.com"),
        ])
        .ignore()
        .cmd("ZADD")
        .arg(keys::SESSIONS_INDEX)
        .arg(T0)
        .arg(id)
        .ignore()
        .query_async(conn)
        .await
        .unwrap();
}

async fn jobs(conn: &mut MultiplexedConnection) -> Vec<Job> {
    let r: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::JOBS_STREAM).arg("-").arg("+").query_async(conn).await.unwrap();
    r.ids.iter().map(|e| Job::decode(&e.get::<Vec<u8>>(keys::PAYLOAD_FIELD).unwrap()).unwrap()).collect()
}

fn resync(server: &testkit::RedisServer, cluster: &Cluster) -> Resync {
    resync_at(server, cluster, &ManualClock::at(T0))
}

fn resync_at(server: &testkit::RedisServer, cluster: &Cluster, clock: &ManualClock) -> Resync {
    let clock = Arc::new(clock.clone());
    Resync::new(server.client(), cluster.raw.clone(), k8s_support::NS.to_owned(), Duration::ZERO, clock, "w".into())
        .unwrap()
}

async fn notices(conn: &mut MultiplexedConnection) -> Vec<Notice> {
    let r: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::EVENTS_STREAM).arg("-").arg("+").query_async(conn).await.unwrap();
    r.ids.iter().filter_map(|e| e.get::<Vec<u8>>(keys::NOTICE_FIELD)).map(|b| Notice::decode(&b).unwrap()).collect()
}

async fn exists<K>(cluster: &Cluster, name: &str) -> bool
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    cluster.api::<K>().get_opt(name).await.unwrap().is_some()
}

async fn replicas(cluster: &Cluster, name: &str) -> Option<i32> {
    let d = cluster.api::<Deployment>().get_opt(name).await.unwrap()?;
    d.spec.and_then(|s| s.replicas)
}

/// Runs the queued jobs with the real executor on the fake cluster until `done`.
async fn run_jobs(server: &testkit::RedisServer, cluster: &Cluster, what: &str, done: impl AsyncFn() -> bool) {
    let runner = Runner::new(server.client(), Arc::new(cluster.exec.clone()), config("w1")).unwrap();
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(runner.run(rx));
    eventually(Duration::from_secs(30), what, || async { done().await }).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), handle).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_deleted_behind_the_workers_back_is_recreated_within_one_resync() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let cluster = Cluster::start().await;
    for (id, desired) in [("aaa", DesiredState::Running), ("bbb", DesiredState::Running)] {
        cluster.converge_retrying(&target(&sid(id), desired, 1)).await.0.unwrap();
        seed(&mut conn, id, "running").await;
    }
    cluster.api::<Deployment>().delete("ws-aaa", &DeleteParams::default()).await.unwrap();

    let report = resync(&server, &cluster).resync_unlocked().await.unwrap();
    assert_eq!((report.live, report.converged), (2, 1));
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);
    let queued = jobs(&mut conn).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].session_id.as_str(), queued[0].command, queued[0].origin),
        ("aaa", Command::Wake, Origin::Drift)
    );

    run_jobs(&server, &cluster, "ws-aaa back", async || replicas(&cluster, "ws-aaa").await == Some(1)).await;
    // Converged now: the next resync enqueues nothing.
    assert_eq!(resync(&server, &cluster).resync_unlocked().await.unwrap().converged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_cluster_gets_running_and_sleeping_sessions_back() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let cluster = Cluster::start().await; // empty, as after a stand-in restart
    seed(&mut conn, "run", "running").await;
    seed(&mut conn, "nap", "sleeping").await;
    let report = resync(&server, &cluster).resync_unlocked().await.unwrap();
    assert_eq!(report.converged, 2);
    run_jobs(&server, &cluster, "both sessions' objects back", async || {
        replicas(&cluster, "ws-run").await == Some(1) && replicas(&cluster, "ws-nap").await == Some(0)
    })
    .await;
    assert!(cluster.api::<PersistentVolumeClaim>().get_opt("ws-nap-data").await.unwrap().is_some());
    assert!(cluster.api::<Service>().get_opt("ws-nap").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_is_reported_and_not_deleted() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let cluster = Cluster::start().await;
    // Objects of a session Redis does not know (a Redis that lost its data).
    cluster.converge_retrying(&target(&sid("lost"), DesiredState::Running, 1)).await.0.unwrap();
    let report = resync(&server, &cluster).resync_unlocked().await.unwrap();
    assert_eq!(report.converged, 0);
    for name in ["Deployment/ws-lost", "PersistentVolumeClaim/ws-lost-data", "Service/ws-lost"] {
        assert!(report.orphans.iter().any(|o| o == name), "{name} in {:?}", report.orphans);
    }
    assert_eq!(replicas(&cluster, "ws-lost").await, Some(1), "still there");
    assert!(cluster.api::<PersistentVolumeClaim>().get_opt("ws-lost-data").await.unwrap().is_some());
    let notes = notices(&mut conn).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        (notes[0].session_id.as_str(), notes[0].kind, notes[0].origin),
        ("lost", NoticeKind::Orphaned, Origin::Drift)
    );
    let mut objects = notes[0].objects.clone();
    objects.sort();
    assert_eq!(objects, ["Deployment/ws-lost", "PersistentVolumeClaim/ws-lost-data", "Service/ws-lost"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delete_orphans_the_deployment_and_service_go_and_the_pvc_only_after_its_backup_succeeded() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let cluster = Cluster::start().await;
    cluster.converge_retrying(&target(&sid("lost"), DesiredState::Running, 1)).await.0.unwrap();
    // A session Redis knows, next to it, is not touched.
    cluster.converge_retrying(&target(&sid("kept"), DesiredState::Running, 1)).await.0.unwrap();
    seed(&mut conn, "kept", "running").await;
    let reaping = || resync(&server, &cluster).deleting_orphans(k8s_support::config());

    let first = reaping().resync_unlocked().await.unwrap();
    let mut deleted = first.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, ["Deployment/ws-lost", "Service/ws-lost"]);
    assert_eq!(first.backups_started, 1);
    assert!(!exists::<Deployment>(&cluster, "ws-lost").await);
    assert!(!exists::<Service>(&cluster, "ws-lost").await);
    assert!(exists::<PersistentVolumeClaim>(&cluster, "ws-lost-data").await, "kept until backed up");
    assert!(
        exists::<Deployment>(&cluster, "ws-kept").await
            && exists::<PersistentVolumeClaim>(&cluster, "ws-kept-data").await
    );

    let jobs_api = cluster.api::<BatchJob>();
    eventually(Duration::from_secs(30), "the backup Job succeeds", || async {
        jobs_api.get_opt("ws-lost-backup-orphan").await.unwrap().is_some_and(|j| outcome(&j) == JobOutcome::Succeeded)
    })
    .await;
    let second = reaping().resync_unlocked().await.unwrap();
    assert_eq!(second.deleted, ["PersistentVolumeClaim/ws-lost-data"]);
    assert!(!exists::<PersistentVolumeClaim>(&cluster, "ws-lost-data").await);
    assert!(exists::<PersistentVolumeClaim>(&cluster, "ws-kept-data").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delete_orphans_a_failed_backup_keeps_the_pvc_and_reports_it() {
    let server = testkit::RedisServer::start().unwrap();
    let cluster = Cluster::start().await;
    cluster.kubelet.set_fail_backups(true);
    cluster.converge_retrying(&target(&sid("lost"), DesiredState::Running, 1)).await.0.unwrap();
    let reaping = || resync(&server, &cluster).deleting_orphans(k8s_support::config());
    assert_eq!(reaping().resync_unlocked().await.unwrap().backups_started, 1);
    let jobs_api = cluster.api::<BatchJob>();
    eventually(Duration::from_secs(30), "the backup Job fails", || async {
        jobs_api
            .get_opt("ws-lost-backup-orphan")
            .await
            .unwrap()
            .is_some_and(|j| matches!(outcome(&j), JobOutcome::Failed(_)))
    })
    .await;
    let report = reaping().resync_unlocked().await.unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(report.backups_failed.len(), 1);
    assert_eq!(report.backups_failed[0].0, "PersistentVolumeClaim/ws-lost-data");
    assert!(exists::<PersistentVolumeClaim>(&cluster, "ws-lost-data").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_not_ready_past_ready_timeout_gets_a_drift_job_and_before_it_none() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let mut cluster = Cluster::start().await;
    cluster.converge_retrying(&target(&sid("slow"), DesiredState::Running, 1)).await.0.unwrap();
    seed(&mut conn, "slow", "running").await;
    // The kubelet stops, and the pod turns not ready at T0.
    cluster.kubelet_stop();
    let pods = cluster.api::<Pod>();
    let listed = pods.list(&ListParams::default().labels("session-uuid=slow")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let name = listed.items[0].metadata.name.clone().unwrap();
    let since = jiff::Timestamp::from_millisecond(T0 as i64).unwrap().to_string();
    let status = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": since}
    ]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();

    let clock = ManualClock::at(T0 + 300_000);
    let timed = || resync_at(&server, &cluster, &clock).with_ready_timeout(Duration::from_secs(300));
    assert_eq!(timed().resync_unlocked().await.unwrap().converged, 0, "not past READY_TIMEOUT yet");
    assert!(jobs(&mut conn).await.is_empty());
    clock.advance_ms(1);
    assert_eq!(timed().resync_unlocked().await.unwrap().converged, 1);
    let queued = jobs(&mut conn).await;
    assert_eq!(
        (queued[0].session_id.as_str(), queued[0].command, queued[0].origin),
        ("slow", Command::Wake, Origin::Drift)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_written_by_a_newer_lease_after_the_list_is_not_deleted() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let cluster = Cluster::start().await;
    cluster.converge_retrying(&target(&sid("lost"), DesiredState::Running, 1)).await.0.unwrap();
    let d = cluster.api::<Deployment>().get("ws-lost").await.unwrap();
    let listed = Listed {
        kind: Kind::Deployment,
        name: "ws-lost".into(),
        uid: d.metadata.uid.clone(),
        fence: worker::k8s::gate::fence_of(&d.metadata),
    };
    // After the resync listed it, a lease holder with a newer token writes it.
    let newer = serde_json::json!({"metadata": {"annotations": {
        "session-manager.io/fence": (listed.fence + 1).to_string()
    }}});
    cluster.api::<Deployment>().patch("ws-lost", &PatchParams::default(), &Patch::Merge(&newer)).await.unwrap();
    let reaper = Reaper::new(Store::new(server.client()).unwrap(), cluster.raw.clone(), k8s_support::config());
    let refused = reaper.reap(&sid("lost"), std::slice::from_ref(&listed), T0).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(exists::<Deployment>(&cluster, "ws-lost").await, "the gate refused the delete");

    // A session Redis knows again (re-checked right before the deletes) is not touched at all.
    seed(&mut conn, "lost", "running").await;
    let listed = Listed { fence: listed.fence + 1, ..listed };
    let reaped = reaper.reap(&sid("lost"), &[listed], T0).await.unwrap();
    assert!(reaped.skipped && reaped.deleted.is_empty(), "{reaped:?}");
    assert!(exists::<Deployment>(&cluster, "ws-lost").await);
}
