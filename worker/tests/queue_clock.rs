//! The runner takes its timestamps from the clock it is given: a job's
//! start and finish times and its event come from a `ManualClock`, not
//! from the system clock.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::sync::Arc;
use std::time::Duration;

use proto_types::{Command, Event, keys};
use queue_support::*;
use tokio::sync::watch;
use worker::clock::ManualClock;
use worker::runner::Runner;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_timestamps_come_from_the_injected_clock() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let clock = ManualClock::at(1_700_000_000_000);
    let exec = FakeExecutor::default();
    let runner =
        Runner::new(server.client(), Arc::new(exec.clone()), config("w1")).unwrap().with_clock(Arc::new(clock));
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(runner.run(rx));

    let job = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    until_state(&server, &job, "succeeded", Duration::from_secs(10)).await;
    let jk = keys::job(job.job_id.as_str());
    assert_eq!(hget(&mut conn, &jk, "started_at_ms").await.as_deref(), Some("1700000000000"));
    assert_eq!(hget(&mut conn, &jk, "finished_at_ms").await.as_deref(), Some("1700000000000"));
    let events: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::EVENTS_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let bytes: Vec<u8> = events.ids.last().unwrap().get("event").unwrap();
    assert_eq!(Event::decode(&bytes).unwrap().at_ms, 1_700_000_000_000);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), handle).await.unwrap().unwrap();
}
