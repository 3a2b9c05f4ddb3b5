//! A poison entry (payload that is not a job) is dead-lettered after the
//! delivery limit, with its raw bytes kept, and later jobs still run.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::time::Duration;

use proto_types::{Command, keys};
use queue_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dead_lettered_and_the_stream_keeps_moving() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    let runner = spawn(&server, &exec, config("w1"));
    let before = enqueue(&mut conn, "first", Command::Create).await.unwrap();
    let poison_id: String = redis::cmd("XADD")
        .arg(keys::JOBS_STREAM)
        .arg("*")
        .arg(keys::PAYLOAD_FIELD)
        .arg(&b"\xc1 not a job"[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let no_field: String =
        redis::cmd("XADD").arg(keys::JOBS_STREAM).arg("*").arg("other").arg("x").query_async(&mut conn).await.unwrap();
    let after = enqueue(&mut conn, "second", Command::Create).await.unwrap();

    until_state(&server, &before, "succeeded", Duration::from_secs(10)).await;
    until_state(&server, &after, "succeeded", Duration::from_secs(10)).await;
    eventually(Duration::from_secs(15), "both poison entries dead-lettered", || {
        let mut c = conn.clone();
        async move {
            let n: u64 = redis::cmd("XLEN").arg(keys::DEAD_STREAM).query_async(&mut c).await.unwrap();
            n == 2
        }
    })
    .await;
    let dead: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::DEAD_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let field = |i: usize, f: &str| match &dead.ids[i].map[f] {
        redis::Value::BulkString(b) => b.clone(),
        other => panic!("{other:?}"),
    };
    let originals: Vec<Vec<u8>> = (0..2).map(|i| field(i, "original_id")).collect();
    assert!(originals.contains(&poison_id.clone().into_bytes()));
    assert!(originals.contains(&no_field.into_bytes()));
    let i = originals.iter().position(|o| *o == poison_id.as_bytes()).unwrap();
    assert_eq!(field(i, "job"), b"\xc1 not a job", "the raw payload is kept for inspection");
    assert_eq!(field(i, "deliveries"), b"3");
    assert!(String::from_utf8(field(i, "reason")).unwrap().contains("undecodable"));
    assert_eq!(pending(&mut conn).await, 0);
    assert_eq!(runner.stats.snapshot().dead_lettered, 2);
    assert_eq!(exec.calls().len(), 2, "poison never reaches the executor");
    runner.shutdown().await;
}
