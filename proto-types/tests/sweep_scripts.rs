//! The sweeper's scripts (guarded enqueue, reschedule, warn) and the
//! enqueue script's lifecycle writes, against a real redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, enqueue, hget, run};
use proto_types::scripts::enqueue::EnqueueReply;
use proto_types::scripts::sweep::{self, Guard, Reschedule, RescheduleReply, SweepReply, Warn, WarnReply};
use proto_types::{Command, JobId, SessionId, SessionState, keys};
use redis::aio::MultiplexedConnection;
use sm_redis::{Attempt, EnqueueRequest, SessionRecord};

async fn due_score(conn: &mut MultiplexedConnection, id: &str) -> Option<f64> {
    redis::cmd("ZSCORE").arg(keys::LIFECYCLE_DUE).arg(id).query_async(conn).await.unwrap()
}

/// The sweeper's sleep for `id` as read now, guarded on `status` and
/// `last_use`; `before` runs between the read and the script.
async fn guarded_sleep(
    conn: &mut MultiplexedConnection,
    id: &str,
    status: SessionState,
    last_use: Option<u64>,
    before: Option<&str>,
) -> SweepReply {
    let sid = SessionId::parse(id).unwrap();
    let rec = SessionRecord::read(conn, &sid).await.unwrap();
    let mut req = EnqueueRequest::new(Command::Sleep, Some(sid.clone()), "user@example.com", "");
    req.origin = proto_types::Origin::Idle;
    let attempt = Attempt::prepare(&req, sid, rec.as_ref(), JobId::from_random([9; 16]), 2_000).unwrap();
    let payload = attempt.job.encode().unwrap();
    let inv = Guard { status, last_use_ms: last_use }.invocation(attempt.invocation(&req, &payload));
    if let Some(key) = before {
        let _: () = redis::cmd("DEL").arg(key).query_async(conn).await.unwrap();
    }
    SweepReply::parse(&run(conn, sweep::SOURCE, &inv).await.unwrap()).unwrap()
}

#[tokio::test]
async fn enqueue_records_the_origin_and_lowers_the_due_score() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let (job, _) = enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    assert_eq!(hget(&mut conn, &keys::job(job.job_id.as_str()), "origin").await.as_deref(), Some("api"));
    assert_eq!(due_score(&mut conn, "abc").await, Some(1_000.0));
    // A later deadline set by the sweeper is lowered by the next command, never raised.
    let _: () =
        redis::cmd("ZADD").arg(keys::LIFECYCLE_DUE).arg(900_000).arg("abc").query_async(&mut conn).await.unwrap();
    enqueue(&mut conn, "abc", Command::Sleep, 1, 2).await;
    assert_eq!(due_score(&mut conn, "abc").await, Some(1_000.0));
}

#[tokio::test]
async fn the_guard_refuses_gone_changed_and_used_sessions() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    enqueue(&mut conn, "gone", Command::Create, 0, 1).await;
    let deleted = keys::session("gone");
    assert_eq!(guarded_sleep(&mut conn, "gone", SessionState::Creating, None, Some(&deleted)).await, SweepReply::Gone);
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await; // creating, last use 1000
    assert_eq!(
        guarded_sleep(&mut conn, "abc", SessionState::Running, Some(1_000), None).await,
        SweepReply::Status("creating".into())
    );
    let _: () =
        redis::cmd("HSET").arg(keys::session("abc")).arg("status").arg("running").query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("ZADD").arg(keys::ACTIVITY).arg(1_500).arg("abc").query_async(&mut conn).await.unwrap();
    assert_eq!(
        guarded_sleep(&mut conn, "abc", SessionState::Running, Some(1_000), None).await,
        SweepReply::Active(1_500)
    );
    assert_eq!(hget(&mut conn, &keys::session("abc"), "generation").await.as_deref(), Some("1"));
    let reply = guarded_sleep(&mut conn, "abc", SessionState::Running, Some(1_500), None).await;
    assert!(matches!(reply, SweepReply::Enqueue(EnqueueReply::Ok { .. })), "{reply:?}");
    assert_eq!(hget(&mut conn, &keys::session("abc"), "desired").await.as_deref(), Some("sleeping"));
    assert_eq!(
        hget(&mut conn, &keys::job(JobId::from_random([9; 16]).as_str()), "origin").await.as_deref(),
        Some("idle")
    );
}

#[tokio::test]
async fn reschedule_never_raises_a_deadline_a_command_lowered() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let set = |generation, at_ms, next| {
        Reschedule { session_id: "abc", generation, at_ms, next, idle_timeout_secs: None }.invocation()
    };
    let r = run(&mut conn, sweep::RESCHEDULE_SOURCE, &set(1, Some(50_000), Some(("sleep", 60_000)))).await.unwrap();
    assert_eq!(RescheduleReply::parse(&r).unwrap(), RescheduleReply::Set);
    assert_eq!(due_score(&mut conn, "abc").await, Some(50_000.0));
    assert_eq!(hget(&mut conn, &keys::session("abc"), "next_action").await.as_deref(), Some("sleep 60000"));
    enqueue(&mut conn, "abc", Command::Sleep, 1, 2).await; // generation 2, due lowered to 1000
    let r = run(&mut conn, sweep::RESCHEDULE_SOURCE, &set(1, Some(90_000), None)).await.unwrap();
    assert_eq!(RescheduleReply::parse(&r).unwrap(), RescheduleReply::Moved);
    assert_eq!(due_score(&mut conn, "abc").await, Some(1_000.0));
    // A new idle timeout since the read counts as a change too.
    let _: () = redis::cmd("HSET")
        .arg(keys::session("abc"))
        .arg("idle_timeout_secs")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = run(&mut conn, sweep::RESCHEDULE_SOURCE, &set(2, Some(90_000), None)).await.unwrap();
    assert_eq!(RescheduleReply::parse(&r).unwrap(), RescheduleReply::Moved);
    let _: () =
        redis::cmd("HDEL").arg(keys::session("abc")).arg("idle_timeout_secs").query_async(&mut conn).await.unwrap();
    let r = run(&mut conn, sweep::RESCHEDULE_SOURCE, &set(2, None, None)).await.unwrap();
    assert_eq!(RescheduleReply::parse(&r).unwrap(), RescheduleReply::Forgot);
    assert_eq!(due_score(&mut conn, "abc").await, None);
    assert_eq!(hget(&mut conn, &keys::session("abc"), "next_action").await, None);
}

#[tokio::test]
async fn warn_publishes_once_per_idle_period() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let warn = |last_use_ms, now_ms| {
        Warn { session_id: "abc", last_use_ms, now_ms, notice: b"n", marker_ttl_ms: 60_000 }.invocation()
    };
    let r = run(&mut conn, sweep::WARN_SOURCE, &warn(10, 20)).await.unwrap();
    assert_eq!(WarnReply::parse(&r).unwrap(), WarnReply::Warned);
    let r = run(&mut conn, sweep::WARN_SOURCE, &warn(10, 30)).await.unwrap();
    assert_eq!(WarnReply::parse(&r).unwrap(), WarnReply::Already(20));
    let r = run(&mut conn, sweep::WARN_SOURCE, &warn(25, 40)).await.unwrap();
    assert_eq!(WarnReply::parse(&r).unwrap(), WarnReply::Warned, "a new idle period is warned again");
    let len: u64 = redis::cmd("XLEN").arg(keys::EVENTS_STREAM).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 2);
    let marker: String = redis::cmd("GET").arg(keys::idle_warning("abc")).query_async(&mut conn).await.unwrap();
    assert_eq!(sweep::parse_marker(&marker), Some((25, 40)));
}
