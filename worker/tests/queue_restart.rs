//! Redis killed and restarted (AOF, fsync always) in the middle of a run:
//! no job whose enqueue Redis acknowledged is lost, and the workers recover
//! by themselves.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, keys};
use queue_support::*;
use testkit::{Persistence, RedisServer};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_no_acknowledged_job() {
    let mut server = RedisServer::start_with(Persistence::AofAlways).unwrap();
    let exec = FakeExecutor::default();
    for s in ["r1", "r2", "r3"] {
        exec.plan(s, Plan { delay: Duration::from_millis(150), ..Plan::default() });
    }
    let runner = spawn(&server, &exec, config("w1"));
    let mut conn = connect(&server).await;
    let mut acked = Vec::new();
    for s in ["r1", "r2", "r3"] {
        acked.push(enqueue(&mut conn, s, Command::Create).await.unwrap());
    }
    for s in ["r1", "r2", "r3"] {
        acked.push(enqueue(&mut conn, s, Command::Sleep).await.unwrap());
    }
    // Kill while jobs are in flight.
    eventually(WAIT, "work in progress", || async { !exec.calls().is_empty() }).await;
    server.kill();
    // Down long enough for every client-side reconnect attempt to fail.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.restart().unwrap();

    let mut conn = connect(&server).await;
    for s in ["r1", "r2", "r3"] {
        acked.push(enqueue(&mut conn, s, Command::Wake).await.unwrap());
    }
    for job in &acked {
        let conn = conn.clone();
        eventually(WAIT, &format!("{} {} terminal", job.session_id, job.command), || {
            let mut c = conn.clone();
            async move { matches!(job_state(&mut c, job).await.as_deref(), Some("succeeded" | "superseded")) }
        })
        .await;
    }
    for s in ["r1", "r2", "r3"] {
        assert_eq!(hget(&mut conn, &keys::session(s), "status").await.as_deref(), Some("running"), "{s}");
    }
    eventually(WAIT, "every entry acknowledged", || {
        let mut c = conn.clone();
        async move { pending(&mut c).await == 0 }
    })
    .await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recreate_a_lost_group() {
    // Without persistence a restart loses the stream and the group.
    let mut server = RedisServer::start().unwrap();
    let exec = FakeExecutor::default();
    let runner = spawn(&server, &exec, config("w1"));
    let mut conn = connect(&server).await;
    let first = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    until_state(&server, &first, "succeeded", WAIT).await;
    server.kill();
    server.restart().unwrap();
    let mut conn = connect(&server).await;
    // The api enqueues into a fresh stream with no group yet.
    let again = enqueue(&mut conn, "xyz", Command::Create).await.unwrap();
    until_state(&server, &again, "succeeded", WAIT).await;
    runner.shutdown().await;
}
