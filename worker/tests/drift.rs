//! Drift repair against an in-process fake cluster and a real redis-server:
//! a Deployment deleted behind the worker's back is recreated within one
//! resync (origin `drift`), an emptied cluster gets running and sleeping
//! sessions back (the sleeping one at 0 replicas), and an orphan is
//! reported, not deleted.
#![allow(clippy::unwrap_used)]

mod k8s_support;
mod queue_support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_support::{Cluster, sid, target};
use kube::api::DeleteParams;
use proto_types::{Command, DesiredState, Job, Origin, keys};
use queue_support::{config, connect, eventually};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use worker::clock::ManualClock;
use worker::runner::Runner;
use worker::sweeper::Resync;

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
    let clock = Arc::new(ManualClock::at(T0));
    Resync::new(server.client(), cluster.raw.clone(), k8s_support::NS.to_owned(), Duration::ZERO, clock, "w".into())
        .unwrap()
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
}
