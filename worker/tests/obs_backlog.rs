//! The `worker_queue_*` gauges against a real redis-server: pending, lag,
//! consumers and the oldest pending entry's age follow the stream, a
//! missing stream reads as an empty backlog, and a dead Redis neither fails
//! the scrape nor loses the last values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proto_types::keys::{GROUP, JOBS_STREAM};
use redis::AsyncCommands as _;
use testkit::RedisServer;
use worker::metrics::Metrics;
use worker::metrics::backlog::{Backlog, CACHE_FOR};

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn backlog_gauges_follow_the_stream() {
    let mut redis = RedisServer::start().unwrap();
    let metrics = Metrics::new();
    let backlog = Backlog::new(redis.client(), metrics.backlog_gauges());

    // Nothing enqueued yet: no stream, no group, an empty backlog and no error.
    backlog.refresh().await;
    let text = metrics.render();
    assert_eq!(value(&text, "worker_queue_pending_entries"), Some(0.0), "{text}");
    assert_eq!(value(&text, "worker_queue_scrape_errors_total"), Some(0.0), "{text}");

    // Three entries, the group reads one of them: 1 pending, 2 not delivered.
    let mut conn = redis.client().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(JOBS_STREAM)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    for n in 0..3 {
        let _: String = conn.xadd(JOBS_STREAM, "*", &[("job", n)]).await.unwrap();
    }
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("w-1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(JOBS_STREAM)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(CACHE_FOR + Duration::from_millis(100)).await;
    backlog.refresh().await;
    let text = metrics.render();
    assert_eq!(value(&text, "worker_queue_pending_entries"), Some(1.0), "{text}");
    assert_eq!(value(&text, "worker_queue_lag_entries"), Some(2.0), "{text}");
    assert_eq!(value(&text, "worker_queue_consumers"), Some(1.0), "{text}");
    let age = value(&text, "worker_queue_oldest_pending_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age) && age >= 0.1, "the pending entry is ~1 s old: {age}");

    // Redis gone: the scrape still answers, the gauges keep their values, the error is counted.
    redis.kill();
    tokio::time::sleep(CACHE_FOR + Duration::from_millis(100)).await;
    backlog.refresh().await;
    let text = metrics.render();
    assert_eq!(value(&text, "worker_queue_pending_entries"), Some(1.0), "{text}");
    assert_eq!(value(&text, "worker_queue_scrape_errors_total"), Some(1.0), "{text}");
}
