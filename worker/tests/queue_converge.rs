//! Level-triggered execution and the session lease: duplicated and
//! reordered jobs for one session converge to its last desired state
//! (stale ones end `superseded`), and two consumers never act on the same
//! session at once.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, DesiredState, keys};
use queue_support::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_reordered_jobs_converge_to_the_last_desired_state() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    // Everything is queued before any worker runs.
    let create = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    let sleep = enqueue(&mut conn, "abc", Command::Sleep).await.unwrap();
    let wake = enqueue(&mut conn, "abc", Command::Wake).await.unwrap();
    let last = enqueue(&mut conn, "abc", Command::ScaleDown).await.unwrap();
    // A duplicate of an old job, appended after the newest (reordered).
    let _: String = redis::cmd("XADD")
        .arg(keys::JOBS_STREAM)
        .arg("*")
        .arg(keys::PAYLOAD_FIELD)
        .arg(wake.encode().unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();

    let exec = FakeExecutor::default();
    let a = spawn(&server, &exec, config("a"));
    let b = spawn(&server, &exec, config("b"));
    until_state(&server, &last, "succeeded", WAIT).await;
    eventually(WAIT, "every entry acknowledged", || {
        let mut c = conn.clone();
        async move { pending(&mut c).await == 0 }
    })
    .await;
    for stale in [&create, &sleep, &wake] {
        assert_eq!(job_state(&mut conn, stale).await.as_deref(), Some("superseded"), "{}", stale.command);
    }
    assert_eq!(hget(&mut conn, &keys::session("abc"), "status").await.as_deref(), Some("sleeping"));
    let calls = exec.calls_for("abc");
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|t| t.desired == DesiredState::Sleeping && t.generation == 4), "{calls:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_never_act_on_one_session_at_once() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    exec.plan("abc", Plan { delay: Duration::from_millis(300), ..Plan::default() });
    let a = spawn(&server, &exec, config("a"));
    let b = spawn(&server, &exec, config("b"));

    let mut jobs = vec![enqueue(&mut conn, "abc", Command::Create).await.unwrap()];
    for round in 0..4u32 {
        // Wait until the previous job is converging, then ask for the opposite.
        let n = exec.calls_for("abc").len();
        eventually(WAIT, "a converge in progress", || async { exec.calls_for("abc").len() > n }).await;
        let command = if round.is_multiple_of(2) { Command::Sleep } else { Command::Wake };
        jobs.push(enqueue(&mut conn, "abc", command).await.unwrap());
    }
    let last = jobs.last().unwrap();
    until_state(&server, last, "succeeded", WAIT).await;
    eventually(WAIT, "every entry acknowledged", || {
        let mut c = conn.clone();
        async move { pending(&mut c).await == 0 }
    })
    .await;
    assert!(!exec.overlapped(), "two converges of one session overlapped");
    let contention = a.stats.snapshot().lease_contention + b.stats.snapshot().lease_contention;
    assert!(contention > 0, "the second job waited for the session lease");
    assert_eq!(hget(&mut conn, &keys::session("abc"), "status").await.as_deref(), Some("running"));
    assert_eq!(exec.calls_for("abc").last().unwrap().desired, DesiredState::Running);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_across_consumers_never_overlap() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    let sessions = ["s1", "s2", "s3"];
    for s in sessions {
        exec.plan(s, Plan { delay: Duration::from_millis(60), ..Plan::default() });
    }
    let a = spawn(&server, &exec, config("a"));
    let b = spawn(&server, &exec, config("b"));
    let mut last = Vec::new();
    for s in sessions {
        enqueue(&mut conn, s, Command::Create).await.unwrap();
    }
    for i in 0..6u32 {
        for s in sessions {
            let command = if i.is_multiple_of(2) { Command::Sleep } else { Command::Wake };
            let job = enqueue(&mut conn, s, command).await.unwrap();
            if i == 5 {
                last.push(job);
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for job in &last {
        until_state(&server, job, "succeeded", WAIT).await;
    }
    eventually(WAIT, "every entry acknowledged", || {
        let mut c = conn.clone();
        async move { pending(&mut c).await == 0 }
    })
    .await;
    assert!(!exec.overlapped());
    for s in sessions {
        assert_eq!(hget(&mut conn, &keys::session(s), "status").await.as_deref(), Some("running"), "{s}");
    }
    a.shutdown().await;
    b.shutdown().await;
}
