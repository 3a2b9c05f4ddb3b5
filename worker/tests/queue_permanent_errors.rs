//! A permanent queue error does not leave its entry pending: a start-script
//! reply this worker cannot read (a session desired state from a newer api)
//! is dead-lettered at once with a terminal status, instead of being
//! redelivered like a retryable failure.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, keys};
use queue_support::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_start_reply_is_dead_lettered_not_left_pending() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let job = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    // A desired state this worker does not know: the start reply cannot be parsed.
    let _: () = redis::cmd("HSET")
        .arg(keys::session("abc"))
        .arg("desired")
        .arg("hibernating")
        .query_async(&mut conn)
        .await
        .unwrap();
    let exec = FakeExecutor::default();
    let runner = spawn(&server, &exec, config("w1"));

    until_state(&server, &job, "dead", WAIT).await;
    assert_eq!(pending(&mut conn).await, 0, "acknowledged, not pending");
    let dead: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::DEAD_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    assert_eq!(dead.ids.len(), 1);
    let reason: String = dead.ids[0].get("reason").unwrap();
    assert!(reason.contains("permanent queue error in start"), "{reason}");
    let deliveries: String = dead.ids[0].get("deliveries").unwrap();
    assert_eq!(deliveries, "1", "dead-lettered on its first delivery");
    let status = hget(&mut conn, &keys::session("abc"), "status").await;
    assert_eq!(status.as_deref(), Some("failed"), "the session records the failure");
    assert!(exec.calls().is_empty(), "the executor never ran");
    let stats = runner.stats.snapshot();
    assert_eq!((stats.dead_lettered, stats.left_pending), (1, 0));
    runner.shutdown().await;
}
