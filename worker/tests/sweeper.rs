//! The lifecycle sweeper against a real redis-server, on a controlled
//! clock: idle sessions get exactly one `sleep` job however many sweepers
//! race, activity after the read cancels it, a session's own timeout wins,
//! the warning comes once and first, TTL deletes, and a sweep's Redis
//! commands depend on the due sessions only.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto_types::scripts::sweep::SweepReply;
use proto_types::{Command, Job, Notice, NoticeKind, Origin, keys};
use queue_support::{FakeExecutor, config, connect, eventually, hget, spawn};
use redis::aio::MultiplexedConnection;
use worker::clock::ManualClock;
use worker::sweeper::{Policy, Store, SweepConfig, SweepOutcome, Sweeper};

const T0: u64 = 1_700_000_000_000;
const MIN: u64 = 60_000;

fn policy() -> Policy {
    Policy { idle_warning_before_ms: 0, ..Policy::default() }
}

fn sweeper(server: &testkit::RedisServer, clock: &ManualClock, policy: Policy, name: &str) -> Sweeper {
    let config = SweepConfig { policy, interval: Duration::from_secs(30), batch: 1000 };
    Sweeper::new(server.client(), config, Arc::new(clock.clone()), name.to_owned()).unwrap()
}

/// A session as the enqueue script and the runner leave it, due at `due_ms`.
async fn seed(conn: &mut MultiplexedConnection, id: &str, status: &str, last_use_ms: u64, due_ms: u64) {
    let desired = if status == "sleeping" { "sleeping" } else { "running" };
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(keys::session(id))
        .arg(&[
            ("user_id", "user@example.com"),
            ("status", status),
            ("desired", desired),
            ("generation", "1"),
            ("replicas", if status == "running" { "1" } else { "0" }),
            ("workspace_url", "https://vs-code.example.com"),
            ("fence", "0"),
        ])
        .arg("created_at_ms")
        .arg(last_use_ms)
        .arg("last_activity_ms")
        .arg(last_use_ms)
        .ignore()
        .cmd("SADD")
        .arg(keys::user_sessions("user@example.com"))
        .arg(id)
        .ignore()
        .cmd("ZADD")
        .arg(keys::LIFECYCLE_DUE)
        .arg(due_ms)
        .arg(id)
        .ignore()
        .query_async(conn)
        .await
        .unwrap();
}

async fn jobs(conn: &mut MultiplexedConnection) -> Vec<Job> {
    let r: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::JOBS_STREAM).arg("-").arg("+").query_async(conn).await.unwrap();
    r.ids.iter().map(|e| Job::decode(&e.get::<Vec<u8>>(keys::PAYLOAD_FIELD).unwrap()).unwrap()).collect()
}

async fn notices(conn: &mut MultiplexedConnection) -> Vec<Notice> {
    let r: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::EVENTS_STREAM).arg("-").arg("+").query_async(conn).await.unwrap();
    r.ids.iter().filter_map(|e| e.get::<Vec<u8>>(keys::NOTICE_FIELD)).map(|b| Notice::decode(&b).unwrap()).collect()
}

fn per_session(jobs: &[Job]) -> HashMap<String, Vec<&Job>> {
    let mut m: HashMap<String, Vec<&Job>> = HashMap::new();
    for j in jobs {
        m.entry(j.session_id.as_str().to_owned()).or_default().push(j);
    }
    m
}

fn sid(i: usize) -> String {
    format!("s{i:04}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sweepers_put_each_idle_session_to_sleep_exactly_once() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    // Session i was last used i*9 s ago: 0..=99 are active (< 15 min), 100..=199 idle.
    for i in 0..200 {
        seed(&mut conn, &sid(i), "running", T0 - i as u64 * 9_000, T0).await;
    }
    let clock = ManualClock::at(T0);
    let (a, b, c) = (
        sweeper(&server, &clock, policy(), "a"),
        sweeper(&server, &clock, policy(), "b"),
        sweeper(&server, &clock, policy(), "c"),
    );
    let (ra, rb, rc) = tokio::join!(a.sweep_unlocked(), b.sweep_unlocked(), c.sweep_unlocked());
    let slept = ra.unwrap().slept + rb.unwrap().slept + rc.unwrap().slept;
    assert_eq!(slept, 100);

    let all = jobs(&mut conn).await;
    let by = per_session(&all);
    for i in 0..200 {
        let got = by.get(&sid(i)).map_or(0, Vec::len);
        if i < 100 {
            assert_eq!(got, 0, "active session {} got a job", sid(i));
        } else {
            assert_eq!(got, 1, "idle session {} got {got} jobs", sid(i));
            let job = by[&sid(i)][0];
            assert_eq!((job.command, job.origin), (Command::Sleep, Origin::Idle));
            let jk = keys::job(job.job_id.as_str());
            assert_eq!(hget(&mut conn, &jk, "origin").await.as_deref(), Some("idle"));
        }
    }

    // The runner carries the sleeps out; the idle sessions end sleeping.
    let exec = FakeExecutor::default();
    let running = spawn(&server, &exec, config("w1"));
    eventually(Duration::from_secs(30), "every idle session sleeping", || {
        let client = server.client();
        async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            for i in 100..200 {
                if hget(&mut conn, &keys::session(&sid(i)), "status").await.as_deref() != Some("sleeping") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    running.shutdown().await;
    for i in 0..100 {
        assert_eq!(hget(&mut conn, &keys::session(&sid(i)), "status").await.as_deref(), Some("running"));
    }
    // Sweeping again at the same time enqueues nothing more.
    let again = a.sweep_unlocked().await.unwrap();
    assert_eq!(again.slept, 0);
    assert_eq!(jobs(&mut conn).await.len(), 100);
}

#[tokio::test]
async fn activity_after_the_read_means_no_sleep() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    seed(&mut conn, "gw", "running", T0 - 20 * MIN, T0).await;
    seed(&mut conn, "cmd", "running", T0 - 20 * MIN, T0).await;
    let store = Store::new(server.client()).unwrap();
    let (read, _) = store.read(&["gw".to_owned(), "cmd".to_owned()]).await.unwrap();
    let last_use = read[0].facts.as_ref().unwrap().last_use_ms;
    // After the read: the gateway flushes a use of one, a command touches the other.
    let _: () =
        redis::cmd("ZADD").arg(keys::ACTIVITY).arg("GT").arg(T0 - 1).arg("gw").query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keys::session("cmd"))
        .arg("last_activity_ms")
        .arg(T0)
        .query_async(&mut conn)
        .await
        .unwrap();
    for session in &read {
        let reply = store.enqueue(session, Command::Sleep, Origin::Idle, Some(last_use), T0).await.unwrap();
        assert!(matches!(reply, SweepReply::Active(_)), "{reply:?}");
    }
    assert!(jobs(&mut conn).await.is_empty());
    assert_eq!(hget(&mut conn, &keys::session("gw"), "desired").await.as_deref(), Some("running"));
}

#[tokio::test]
async fn a_sessions_own_timeout_wins_over_the_default() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    seed(&mut conn, "short", "running", T0 - 2 * MIN, T0).await;
    seed(&mut conn, "long", "running", T0 - 20 * MIN, T0).await;
    seed(&mut conn, "plain", "running", T0 - 2 * MIN, T0).await;
    for (id, secs) in [("short", "60"), ("long", "3600")] {
        let _: () = redis::cmd("HSET")
            .arg(keys::session(id))
            .arg("idle_timeout_secs")
            .arg(secs)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let clock = ManualClock::at(T0);
    sweeper(&server, &clock, policy(), "a").sweep_unlocked().await.unwrap();
    let all = jobs(&mut conn).await;
    let slept: Vec<&str> = all.iter().map(|j| j.session_id.as_str()).collect();
    assert_eq!(slept, vec!["short"]);
    // The others wait for their own deadlines, shown as next_action.
    assert_eq!(
        hget(&mut conn, &keys::session("long"), "next_action").await,
        Some(format!("sleep {}", T0 - 20 * MIN + 60 * MIN))
    );
    assert_eq!(hget(&mut conn, &keys::session("plain"), "next_action").await, Some(format!("sleep {}", T0 + 13 * MIN)));
}

#[tokio::test]
async fn the_warning_comes_once_and_before_the_sleep() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    seed(&mut conn, "abc", "running", T0, T0).await;
    let clock = ManualClock::at(T0);
    let with_warning = Policy::default();
    let (a, b) = (sweeper(&server, &clock, with_warning, "a"), sweeper(&server, &clock, with_warning, "b"));
    a.sweep_unlocked().await.unwrap(); // schedules the warning
    clock.set_ms(T0 + 13 * MIN);
    let (ra, rb) = tokio::join!(a.sweep_unlocked(), b.sweep_unlocked());
    assert_eq!(ra.unwrap().warned + rb.unwrap().warned, 1);
    let n = notices(&mut conn).await;
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].kind, n[0].action_at_ms, n[0].at_ms), (NoticeKind::IdleWarning, T0 + 15 * MIN, T0 + 13 * MIN));
    assert!(jobs(&mut conn).await.is_empty(), "no sleep at the warning");
    clock.set_ms(T0 + 14 * MIN);
    a.sweep_unlocked().await.unwrap();
    assert!(jobs(&mut conn).await.is_empty(), "no sleep before the announced time");
    clock.set_ms(T0 + 15 * MIN);
    a.sweep_unlocked().await.unwrap();
    let all = jobs(&mut conn).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].command, Command::Sleep);
    assert!(all[0].requested_at_ms >= n[0].action_at_ms);
    assert_eq!(notices(&mut conn).await.len(), 1, "warned once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_deletes_unused_sessions_with_origin_ttl() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    seed(&mut conn, "old", "sleeping", T0 - 25 * 60 * MIN, T0).await;
    seed(&mut conn, "young", "sleeping", T0 - 60 * MIN, T0).await;
    let clock = ManualClock::at(T0);
    let report = sweeper(&server, &clock, policy(), "a").sweep_unlocked().await.unwrap();
    assert_eq!(report.deleted, 1);
    let all = jobs(&mut conn).await;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].session_id.as_str(), all[0].command, all[0].origin), ("old", Command::Delete, Origin::Ttl));
    let exec = FakeExecutor::default();
    let running = spawn(&server, &exec, config("w1"));
    eventually(Duration::from_secs(20), "old session deleted", || {
        let client = server.client();
        async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            hget(&mut conn, &keys::session("old"), "status").await.as_deref() == Some("deleted")
        }
    })
    .await;
    running.shutdown().await;
    assert_eq!(exec.calls_for("old").len(), 1, "the delete ran like any delete");
    assert_eq!(hget(&mut conn, &keys::session("young"), "status").await.as_deref(), Some("sleeping"));
    // The deleted session leaves the due set at its next look.
    clock.set_ms(T0 + 60 * MIN);
    let _: () = redis::cmd("ZADD").arg(keys::LIFECYCLE_DUE).arg(T0).arg("old").query_async(&mut conn).await.unwrap();
    sweeper(&server, &clock, policy(), "a").sweep_unlocked().await.unwrap();
    let score: Option<f64> =
        redis::cmd("ZSCORE").arg(keys::LIFECYCLE_DUE).arg("old").query_async(&mut conn).await.unwrap();
    assert_eq!(score, None);
}

#[tokio::test]
async fn one_of_three_workers_sweeps_per_interval() {
    let server = testkit::RedisServer::start().unwrap();
    let clock = ManualClock::at(T0);
    let s: Vec<Sweeper> = ["a", "b", "c"].iter().map(|n| sweeper(&server, &clock, policy(), n)).collect();
    let (x, y, z) = tokio::join!(s[0].sweep_once(), s[1].sweep_once(), s[2].sweep_once());
    let swept = [x.unwrap(), y.unwrap(), z.unwrap()].iter().filter(|o| matches!(o, SweepOutcome::Swept(_))).count();
    assert_eq!(swept, 1);
}

/// Redis commands one sweep sends (script-internal ones included), from
/// `INFO commandstats`, without the measuring commands themselves.
async fn commands_of_one_sweep(total: usize, due: usize) -> u64 {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    for i in 0..total {
        let due_ms = if i < due { T0 } else { T0 + 60 * MIN };
        seed(&mut conn, &sid(i), "running", T0 - 20 * MIN, due_ms).await;
    }
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await.unwrap();
    let clock = ManualClock::at(T0);
    let outcome = sweeper(&server, &clock, policy(), "a").sweep_once().await.unwrap();
    assert!(matches!(outcome, SweepOutcome::Swept(r) if r.due == due && r.slept == due), "{outcome:?}");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| !l.starts_with("info:") && !l.starts_with("config|"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_sweeps_redis_commands_grow_with_due_sessions_not_total_sessions() {
    let small = commands_of_one_sweep(100, 20).await;
    let large = commands_of_one_sweep(5_000, 20).await;
    assert_eq!(small, large, "100 sessions: {small} commands, 5,000 sessions: {large}");
    let fewer = commands_of_one_sweep(5_000, 5).await;
    assert!(fewer < large, "5 due: {fewer}, 20 due: {large}");
}
