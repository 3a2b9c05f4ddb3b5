//! Enqueue → consume → finish → ack, as a user sees it: the job ends
//! `succeeded`, the session records what the executor observed, a status
//! event is published, the KEDA demand key follows, nothing stays pending,
//! and shutdown is graceful.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, DesiredState, Event, JobState, SessionState, keys};
use queue_support::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_jobs_run_to_succeeded_and_publish_events() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    let runner = spawn(&server, &exec, config("w1"));

    let create = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    until_state(&server, &create, "succeeded", WAIT).await;
    let sk = keys::session("abc");
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("running"));
    assert_eq!(hget(&mut conn, &sk, "replicas").await.as_deref(), Some("1"));
    assert_eq!(hget(&mut conn, &sk, "last_error").await.as_deref(), Some(""));
    let demand: u64 = redis::cmd("LLEN").arg(keys::demand("abc")).query_async(&mut conn).await.unwrap();
    assert_eq!(demand, 1);
    let calls = exec.calls_for("abc");
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].desired, calls[0].generation, calls[0].attempt), (DesiredState::Running, 1, 1));
    assert_eq!(calls[0].workspace_url.as_deref(), Some("https://vs-code.example.com"));

    let sleep = enqueue(&mut conn, "abc", Command::Sleep).await.unwrap();
    until_state(&server, &sleep, "succeeded", WAIT).await;
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("sleeping"));
    let demand: bool = redis::cmd("EXISTS").arg(keys::demand("abc")).query_async(&mut conn).await.unwrap();
    assert!(!demand, "a sleeping session has no KEDA demand");
    assert_eq!(pending(&mut conn).await, 0);

    let events: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::EVENTS_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let events: Vec<Event> = events
        .ids
        .iter()
        .map(|e| match &e.map[keys::EVENT_FIELD] {
            redis::Value::BulkString(b) => Event::decode(b).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].job_id.clone(), events[0].job_state), (create.job_id.clone(), JobState::Succeeded));
    assert_eq!((events[1].command, events[1].session_state), (Command::Sleep, SessionState::Sleeping));
    assert_eq!(runner.stats.snapshot().succeeded, 2);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_are_retried_and_permanent_ones_fail_the_job() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    exec.plan("flaky", Plan { retryable_failures: 2, ..Plan::default() });
    exec.plan("broken", Plan { permanent: Some("admission webhook denied".into()), ..Plan::default() });
    let runner = spawn(&server, &exec, config("w1"));

    let flaky = enqueue(&mut conn, "flaky", Command::Create).await.unwrap();
    let broken = enqueue(&mut conn, "broken", Command::Create).await.unwrap();
    until_state(&server, &flaky, "succeeded", WAIT).await;
    until_state(&server, &broken, "failed", WAIT).await;
    assert_eq!(exec.calls_for("flaky").len(), 3, "two retries then success");
    assert_eq!(exec.calls_for("broken").len(), 1, "permanent errors are not retried");
    let jk = keys::job(broken.job_id.as_str());
    assert_eq!(hget(&mut conn, &jk, "error").await.as_deref(), Some("admission webhook denied"));
    let sk = keys::session("broken");
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("failed"));
    assert_eq!(hget(&mut conn, &sk, "last_error").await.as_deref(), Some("admission webhook denied"));
    assert_eq!(runner.stats.snapshot().retries, 2);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_in_flight_job_finish() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    exec.plan("slow", Plan { delay: Duration::from_millis(800), ..Plan::default() });
    let runner = spawn(&server, &exec, config("w1"));
    let job = enqueue(&mut conn, "slow", Command::Create).await.unwrap();
    eventually(WAIT, "converge started", || async { exec.active("slow") == 1 }).await;
    runner.shutdown().await;
    assert_eq!(job_state(&mut conn, &job).await.as_deref(), Some("succeeded"));
    assert_eq!(pending(&mut conn).await, 0);

    // Nothing is read after shutdown.
    let later = enqueue(&mut conn, "slow", Command::Sleep).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(job_state(&mut conn, &later).await.as_deref(), Some("queued"));
}
