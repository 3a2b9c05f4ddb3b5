//! Trimming runs while jobs are pending and never removes a pending entry.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, keys};
use queue_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_pending_entries() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    exec.plan("slow", Plan { delay: Duration::from_millis(2500), ..Plan::default() });
    let runner = spawn(&server, &exec, config("w1"));

    let mut quick = Vec::new();
    for i in 0..4 {
        quick.push(enqueue(&mut conn, &format!("q{i}"), Command::Create).await.unwrap());
    }
    for job in &quick {
        until_state(&server, job, "succeeded", Duration::from_secs(10)).await;
    }
    let slow = enqueue(&mut conn, "slow", Command::Create).await.unwrap();
    eventually(Duration::from_secs(10), "slow job converging", || async { exec.active("slow") == 1 }).await;
    for i in 4..8 {
        quick.push(enqueue(&mut conn, &format!("q{i}"), Command::Create).await.unwrap());
    }
    for job in &quick {
        until_state(&server, job, "succeeded", Duration::from_secs(10)).await;
    }
    // Let the trimmer run a few times while the slow entry is pending.
    let slow_entry = hget(&mut conn, &keys::job(slow.job_id.as_str()), "stream_id").await.unwrap();
    eventually(Duration::from_secs(10), "entries acknowledged before the pending one trimmed", || {
        let mut c = conn.clone();
        async move {
            let len: u64 = redis::cmd("XLEN").arg(keys::JOBS_STREAM).query_async(&mut c).await.unwrap();
            len == 5
        }
    })
    .await;
    let still: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(keys::JOBS_STREAM)
        .arg(&slow_entry)
        .arg(&slow_entry)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(still.ids.len(), 1, "the pending entry is still in the stream");
    assert_eq!(job_state(&mut conn, &slow).await.as_deref(), Some("running"));
    until_state(&server, &slow, "succeeded", Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), "stream trimmed once nothing is pending", || {
        let mut c = conn.clone();
        async move {
            let len: u64 = redis::cmd("XLEN").arg(keys::JOBS_STREAM).query_async(&mut c).await.unwrap();
            len <= 1
        }
    })
    .await;
    runner.shutdown().await;
}
