//! A consumer that dies holding a job: the job is reclaimed after the lease
//! idle time and finished by another consumer; an entry delivered too often
//! is dead-lettered with the job marked `dead`.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, keys};
use queue_support::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_crashed_consumer_is_finished_by_another() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let hung = FakeExecutor::default();
    hung.plan("abc", Plan { hang: true, ..Plan::default() });
    let first = spawn(&server, &hung, config("dies"));
    let job = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    eventually(WAIT, "first consumer converging", || async { hung.active("abc") == 1 }).await;
    first.crash().await;
    assert_eq!(job_state(&mut conn, &job).await.as_deref(), Some("running"));
    assert_eq!(pending(&mut conn).await, 1, "the crashed consumer never acknowledged");

    let healthy = FakeExecutor::default();
    let second = spawn(&server, &healthy, config("survives"));
    until_state(&server, &job, "succeeded", WAIT).await;
    assert_eq!(hget(&mut conn, &keys::session("abc"), "status").await.as_deref(), Some("running"));
    assert_eq!(pending(&mut conn).await, 0);
    let calls = healthy.calls_for("abc");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].attempt, 2, "the second start counts as a second attempt");
    let stats = second.stats.snapshot();
    assert!(stats.reclaimed >= 1, "{stats:?}");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_read_but_never_acknowledged_is_reclaimed() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::JOBS_STREAM)
        .arg(keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let job = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    // A consumer reads it and vanishes (process killed between read and start).
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(keys::GROUP)
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(keys::JOBS_STREAM)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let exec = FakeExecutor::default();
    let runner = spawn(&server, &exec, config("w1"));
    until_state(&server, &job, "succeeded", WAIT).await;
    assert_eq!(pending(&mut conn).await, 0);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_succeeds_is_dead_lettered_after_the_limit() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    exec.plan("down", Plan { always_retryable: true, ..Plan::default() });
    let runner = spawn(&server, &exec, config("w1"));
    let job = enqueue(&mut conn, "down", Command::Create).await.unwrap();
    until_state(&server, &job, "dead", WAIT).await;
    let jk = keys::job(job.job_id.as_str());
    let error = hget(&mut conn, &jk, "error").await.unwrap();
    assert!(error.contains("delivered 4 times (limit 3)"), "{error}");
    let sk = keys::session("down");
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("failed"));
    assert_eq!(hget(&mut conn, &sk, "last_error").await, Some(error));
    let dead: u64 = redis::cmd("XLEN").arg(keys::DEAD_STREAM).query_async(&mut conn).await.unwrap();
    assert_eq!(dead, 1);
    assert_eq!(pending(&mut conn).await, 0);
    // 3 deliveries × (1 try + 3 retries).
    assert_eq!(exec.calls_for("down").len(), 12);

    // The stream keeps moving.
    let next = enqueue(&mut conn, "other", Command::Create).await.unwrap();
    until_state(&server, &next, "succeeded", WAIT).await;
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_first_drains_its_own_pending_list() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    // A lease far longer than the test: nothing can be reclaimed by idle time.
    let mut cfg = config("pod-0");
    cfg.lease = Duration::from_secs(60);
    let hung = FakeExecutor::default();
    hung.plan("abc", Plan { hang: true, ..Plan::default() });
    let before = spawn(&server, &hung, cfg.clone());
    let job = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    eventually(WAIT, "converging", || async { hung.active("abc") == 1 }).await;
    before.crash().await;

    // Same consumer name (same pod restarted): its pending entry comes first.
    let healthy = FakeExecutor::default();
    let after = spawn(&server, &healthy, cfg);
    until_state(&server, &job, "succeeded", WAIT).await;
    assert_eq!(after.stats.snapshot().reclaimed, 0, "picked up from its own pending list, not reclaimed");
    assert_eq!(pending(&mut conn).await, 0);
    after.shutdown().await;
}
