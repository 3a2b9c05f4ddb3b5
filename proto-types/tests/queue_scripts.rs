//! The worker-side scripts (start, lease, finish, dead-letter, trim)
//! against a real redis-server.
#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, enqueue, hget, run};
use proto_types::scripts::dead_letter::{self, DeadJob, DeadLetter};
use proto_types::scripts::finish::{BackupWrite, Finish, FinishReply, SessionUpdate};
use proto_types::scripts::lease::{self, Acquire, AcquireReply, Lease};
use proto_types::scripts::start::{Start, StartReply};
use proto_types::scripts::trim::{self, TrimReply};
use proto_types::{BackupKind, Command, DesiredState, Event, Job, JobState, SessionState, keys, record};
use redis::aio::MultiplexedConnection;

const GROUP: &str = keys::GROUP;

async fn group(conn: &mut MultiplexedConnection) {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::JOBS_STREAM)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .unwrap();
}

/// Delivers up to `n` new entries to consumer `c`; returns their ids.
async fn deliver(conn: &mut MultiplexedConnection, c: &str, n: usize) -> Vec<String> {
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(c)
        .arg("COUNT")
        .arg(n)
        .arg("STREAMS")
        .arg(keys::JOBS_STREAM)
        .arg(">")
        .query_async(conn)
        .await
        .unwrap();
    reply.keys.into_iter().flat_map(|k| k.ids).map(|e| e.id).collect()
}

async fn pending_count(conn: &mut MultiplexedConnection) -> u64 {
    let summary: redis::streams::StreamPendingReply =
        redis::cmd("XPENDING").arg(keys::JOBS_STREAM).arg(GROUP).query_async(conn).await.unwrap();
    summary.count() as u64
}

fn event(job: &Job, state: JobState, session_state: SessionState) -> Vec<u8> {
    Event {
        job_id: job.job_id.clone(),
        session_id: job.session_id.clone(),
        command: job.command,
        job_state: state,
        session_state,
        at_ms: 5,
        error: None,
        origin: job.origin,
    }
    .encode()
    .unwrap()
}

async fn start(conn: &mut MultiplexedConnection, job: &Job) -> StartReply {
    let inv = Start { job_id: job.job_id.as_str(), session_id: job.session_id.as_str(), now_ms: 100 }.invocation();
    StartReply::parse(&run(conn, proto_types::scripts::start::SOURCE, &inv).await.unwrap()).unwrap()
}

async fn acquire(conn: &mut MultiplexedConnection, session: &str, owner: &str) -> AcquireReply {
    let inv = Acquire { session_id: session, owner, ttl_ms: 30_000 }.invocation();
    AcquireReply::parse(&run(conn, lease::ACQUIRE_SOURCE, &inv).await.unwrap()).unwrap()
}

async fn finish(
    conn: &mut MultiplexedConnection,
    job: &Job,
    entry: &str,
    state: JobState,
    update: Option<SessionUpdate<'_>>,
    error: Option<&str>,
) -> FinishReply {
    finish_pending(conn, job, entry, state, update, error, None).await
}

/// [`finish`] of a job that may have recorded backup `pending` as pending.
async fn finish_pending(
    conn: &mut MultiplexedConnection,
    job: &Job,
    entry: &str,
    state: JobState,
    update: Option<SessionUpdate<'_>>,
    error: Option<&str>,
    pending: Option<&str>,
) -> FinishReply {
    let ev = event(job, state, update.as_ref().map_or(SessionState::Running, |u| u.status));
    let inv = Finish {
        job_id: job.job_id.as_str(),
        session_id: job.session_id.as_str(),
        user_id: "user@example.com",
        entry_id: entry,
        group: GROUP,
        state,
        error,
        session: update,
        pending_backup: pending,
        event: &ev,
        now_ms: 200,
    }
    .invocation();
    FinishReply::parse(&run(conn, proto_types::scripts::finish::SOURCE, &inv).await.unwrap()).unwrap()
}

fn update(fence: u64, status: SessionState, replicas: u32) -> Option<SessionUpdate<'static>> {
    Some(SessionUpdate { fence, status, replicas, backup_file: None, upstream: None, backup: None })
}

#[tokio::test]
async fn start_reports_session_and_counts_attempts_then_terminal() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let (job, _) = enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let StartReply::Started { attempts, session } = start(&mut conn, &job).await else { panic!() };
    assert_eq!(attempts, 1);
    assert_eq!(session.generation, 1);
    assert_eq!(session.desired, Some(DesiredState::Running));
    assert_eq!(session.status, Some(SessionState::Creating));
    assert_eq!(session.user_id.as_deref(), Some("user@example.com"));
    let jk = keys::job(job.job_id.as_str());
    assert_eq!(hget(&mut conn, &jk, "state").await.as_deref(), Some("running"));
    assert_eq!(hget(&mut conn, &jk, "started_at_ms").await.as_deref(), Some("100"));
    let StartReply::Started { attempts, .. } = start(&mut conn, &job).await else { panic!() };
    assert_eq!(attempts, 2);

    let _: () = redis::cmd("HSET").arg(&jk).arg("state").arg("succeeded").query_async(&mut conn).await.unwrap();
    assert_eq!(start(&mut conn, &job).await, StartReply::Terminal { state: JobState::Succeeded });
}

#[tokio::test]
async fn start_on_missing_session_reports_generation_zero() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let job = common::job("gone", Command::Wake, 3, 4);
    let StartReply::Started { session, .. } = start(&mut conn, &job).await else { panic!() };
    assert_eq!(session.generation, 0);
    assert_eq!(session.desired, None);
}

#[tokio::test]
async fn lease_is_exclusive_fenced_and_released_only_by_its_holder() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let AcquireReply::Acquired { token: t1 } = acquire(&mut conn, "abc", "w1:1-0").await else { panic!() };
    assert!(matches!(acquire(&mut conn, "abc", "w2:2-0").await, AcquireReply::Held { owner, .. } if owner == "w1:1-0"));
    // Re-entrant for the same holder, same token.
    assert_eq!(acquire(&mut conn, "abc", "w1:1-0").await, AcquireReply::Acquired { token: t1 });

    let mine = Lease { session_id: "abc".into(), owner: "w1:1-0".into(), token: t1 };
    let impostor = Lease { session_id: "abc".into(), owner: "w2:2-0".into(), token: t1 };
    let held = |r: Vec<String>| lease::parse_held(&r).unwrap();
    assert!(held(run(&mut conn, lease::RENEW_SOURCE, &mine.renew(30_000)).await.unwrap()));
    assert!(!held(run(&mut conn, lease::RENEW_SOURCE, &impostor.renew(30_000)).await.unwrap()));
    assert!(!held(run(&mut conn, lease::RELEASE_SOURCE, &impostor.release()).await.unwrap()));
    assert!(held(run(&mut conn, lease::RELEASE_SOURCE, &mine.release()).await.unwrap()));
    assert!(!held(run(&mut conn, lease::RELEASE_SOURCE, &mine.release()).await.unwrap()));

    let AcquireReply::Acquired { token: t2 } = acquire(&mut conn, "abc", "w2:2-0").await else { panic!() };
    assert!(t2 > t1, "every acquire issues a higher fencing token");
}

#[tokio::test]
async fn finish_records_everything_in_one_step() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    let (job, _) = enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let entry = deliver(&mut conn, "c1", 10).await.remove(0);
    start(&mut conn, &job).await;
    let reply = finish(&mut conn, &job, &entry, JobState::Succeeded, update(3, SessionState::Running, 1), None).await;
    assert_eq!(reply, FinishReply::Finished);

    let jk = keys::job(job.job_id.as_str());
    assert_eq!(hget(&mut conn, &jk, "state").await.as_deref(), Some("succeeded"));
    let ttl: i64 = redis::cmd("TTL").arg(&jk).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl as u64 <= keys::JOB_TTL_SECS);
    let sk = keys::session("abc");
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("running"));
    assert_eq!(hget(&mut conn, &sk, "replicas").await.as_deref(), Some("1"));
    assert_eq!(hget(&mut conn, &sk, "fence").await.as_deref(), Some("3"));
    let demand: u64 = redis::cmd("LLEN").arg(keys::demand("abc")).query_async(&mut conn).await.unwrap();
    assert_eq!(demand, 1, "a running session keeps its KEDA demand at 1");
    assert_eq!(pending_count(&mut conn).await, 0);
    let events: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::EVENTS_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    assert_eq!(events.ids.len(), 1);
    let redis::Value::BulkString(bytes) = &events.ids[0].map[keys::EVENT_FIELD] else { panic!() };
    let ev = Event::decode(bytes).unwrap();
    assert_eq!((ev.job_state, ev.session_state), (JobState::Succeeded, SessionState::Running));

    // A lost reply: finishing again only acknowledges.
    let again = finish(&mut conn, &job, &entry, JobState::Failed, update(3, SessionState::Failed, 0), Some("x")).await;
    assert_eq!(again, FinishReply::AlreadyTerminal { state: JobState::Succeeded });
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("running"));
}

/// The gateway proxies to `upstream`: it is there exactly while the
/// session is recorded running, in the same step as the status.
#[tokio::test]
async fn finish_records_the_upstream_while_running_and_removes_it_otherwise() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    let sk = keys::session("abc");
    let running = |fence| SessionUpdate {
        fence,
        status: SessionState::Running,
        replicas: 1,
        backup_file: None,
        upstream: Some("10.0.0.7:8080"),
        backup: None,
    };
    let steps = [
        (Command::Create, running(1), Some("10.0.0.7:8080")),
        // Sleeping: gone, even though the caller passed an address.
        (Command::Sleep, SessionUpdate { status: SessionState::Sleeping, replicas: 0, ..running(2) }, None),
        (Command::Wake, running(3), Some("10.0.0.7:8080")),
        // Running without a known address: nothing stale is left behind.
        (Command::Sleep, SessionUpdate { upstream: None, ..running(4) }, None),
        (Command::Wake, SessionUpdate { status: SessionState::Failed, replicas: 0, ..running(5) }, None),
    ];
    for (generation, (command, update, want)) in (0u64..).zip(steps) {
        let status = update.status;
        let (job, _) = enqueue(&mut conn, "abc", command, generation, generation as u8 + 1).await;
        let entry = deliver(&mut conn, "c1", 10).await.remove(0);
        let reply = finish(&mut conn, &job, &entry, JobState::Succeeded, Some(update), None).await;
        assert_eq!(reply, FinishReply::Finished, "{command}");
        assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some(status.as_str()), "{command}");
        assert_eq!(hget(&mut conn, &sk, record::session::UPSTREAM).await.as_deref(), want, "{command} -> {status}");
    }
}

#[tokio::test]
async fn finish_with_stale_fence_writes_nothing() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    let (job, _) = enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let entry = deliver(&mut conn, "c1", 10).await.remove(0);
    let _: () =
        redis::cmd("HSET").arg(keys::session("abc")).arg("fence").arg("9").query_async(&mut conn).await.unwrap();
    let reply = finish(&mut conn, &job, &entry, JobState::Succeeded, update(4, SessionState::Sleeping, 0), None).await;
    assert_eq!(reply, FinishReply::Fenced { session_fence: 9 });
    assert_eq!(hget(&mut conn, &keys::session("abc"), "status").await.as_deref(), Some("creating"));
    assert_eq!(pending_count(&mut conn).await, 1, "a refused finish acknowledges nothing");
    // Finishing without a session write still records the job.
    let reply = finish(&mut conn, &job, &entry, JobState::Superseded, None, None).await;
    assert_eq!(reply, FinishReply::Finished);
    assert_eq!(hget(&mut conn, &keys::session("abc"), "status").await.as_deref(), Some("creating"));
    assert_eq!(pending_count(&mut conn).await, 0);
}

/// A delete whose backup failed records it as failed, with the reason, and
/// the session stays (failed, not deleted).
#[tokio::test]
async fn a_failed_backup_is_recorded_with_its_reason() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let (del, _) = enqueue(&mut conn, "abc", Command::Delete, 1, 2).await;
    let entry = deliver(&mut conn, "c1", 10).await.remove(1);
    let up = Some(SessionUpdate {
        fence: 1,
        status: SessionState::Failed,
        replicas: 0,
        backup_file: None,
        upstream: None,
        backup: Some(BackupWrite {
            id: "abc-1",
            kind: BackupKind::Snapshot,
            location: "ws-abc-snap-g1",
            size_bytes: 0,
            sha256: "",
            state: "failed",
        }),
    });
    let why = "backup failed, volume kept; delete again to retry: BackoffLimitExceeded";
    assert_eq!(finish(&mut conn, &del, &entry, JobState::Failed, up, Some(why)).await, FinishReply::Finished);
    let bk = keys::backup("abc-1");
    assert_eq!(hget(&mut conn, &bk, record::backup::STATE).await.as_deref(), Some(record::backup::STATE_FAILED));
    assert_eq!(hget(&mut conn, &bk, record::backup::ERROR).await.as_deref(), Some(why));
    assert_eq!(hget(&mut conn, &bk, record::backup::KIND).await.as_deref(), Some(record::backup::KIND_SNAPSHOT));
    assert_eq!(hget(&mut conn, &bk, record::backup::LOCATION).await.as_deref(), Some("ws-abc-snap-g1"));
    assert_eq!(hget(&mut conn, &keys::session("abc"), "status").await.as_deref(), Some("failed"));
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys::user_backups("user@example.com"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids, ["abc-1"]);
}

/// A stale lease holder's delete records no backup either: the archive it
/// names may be one a newer holder already recorded differently.
#[tokio::test]
async fn a_fenced_finish_records_no_backup() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let (del, _) = enqueue(&mut conn, "abc", Command::Delete, 1, 2).await;
    let entry = deliver(&mut conn, "c1", 10).await.remove(1);
    let _: () =
        redis::cmd("HSET").arg(keys::session("abc")).arg("fence").arg("9").query_async(&mut conn).await.unwrap();
    let up = Some(SessionUpdate {
        fence: 4,
        status: SessionState::Deleted,
        replicas: 0,
        backup_file: Some("b.zip"),
        upstream: None,
        backup: Some(BackupWrite {
            id: "abc-0",
            kind: BackupKind::Archive,
            location: "b.zip",
            size_bytes: 1,
            sha256: "ab",
            state: "succeeded",
        }),
    });
    assert_eq!(
        finish(&mut conn, &del, &entry, JobState::Succeeded, up, None).await,
        FinishReply::Fenced { session_fence: 9 }
    );
    for key in [keys::backup("abc-0"), keys::user_backups("user@example.com"), keys::session_backups("abc")] {
        let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.unwrap();
        assert!(!exists, "{key}");
    }
}

#[tokio::test]
async fn finish_delete_tombstones_the_session_and_frees_the_user_slot() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let (del, _) = enqueue(&mut conn, "abc", Command::Delete, 1, 2).await;
    let entries = deliver(&mut conn, "c1", 10).await;
    let up = Some(SessionUpdate {
        fence: 1,
        status: SessionState::Deleted,
        replicas: 0,
        backup_file: Some("b.zip"),
        upstream: Some("10.0.0.7:8080"),
        backup: Some(BackupWrite {
            id: "abc-1",
            kind: BackupKind::Archive,
            location: "b.zip",
            size_bytes: 5_242_880,
            sha256: "ab12",
            state: "succeeded",
        }),
    });
    assert_eq!(finish(&mut conn, &del, &entries[1], JobState::Succeeded, up, None).await, FinishReply::Finished);
    let sk = keys::session("abc");
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("deleted"));
    assert_eq!(hget(&mut conn, &sk, "backup_file").await.as_deref(), Some("b.zip"));
    let ttl: i64 = redis::cmd("TTL").arg(&sk).query_async(&mut conn).await.unwrap();
    assert!(ttl > 0 && ttl as u64 <= keys::TOMBSTONE_TTL_SECS);
    let live: bool = redis::cmd("SISMEMBER")
        .arg(keys::user_sessions("user@example.com"))
        .arg("abc")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!live);
    let demand: bool = redis::cmd("EXISTS").arg(keys::demand("abc")).query_async(&mut conn).await.unwrap();
    assert!(!demand);
    // The verified backup is recorded in the same step, and indexed for its user and session.
    let bk = keys::backup("abc-1");
    for (field, want) in [
        (record::backup::SESSION, "abc"),
        (record::backup::USER, "user@example.com"),
        (record::backup::KIND, "archive"),
        (record::backup::LOCATION, "b.zip"),
        (record::backup::SIZE_BYTES, "5242880"),
        (record::backup::SHA256, "ab12"),
        (record::backup::STATE, record::backup::STATE_SUCCEEDED),
        (record::backup::CREATED_AT, "200"),
        (record::backup::ERROR, ""),
    ] {
        assert_eq!(hget(&mut conn, &bk, field).await.as_deref(), Some(want), "{field}");
    }
    for index in [keys::user_backups("user@example.com"), keys::session_backups("abc")] {
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
        assert_eq!(ids, ["abc-1"], "{index}");
    }
}

/// Dead-letters the delivered `entry` of a decoded `job` (delivered 6 times) for `reason`.
async fn dead_letter_job(conn: &mut MultiplexedConnection, job: &Job, entry: &str, reason: &str) {
    let payload = job.encode().unwrap();
    let ev = event(job, JobState::Dead, SessionState::Failed);
    let dl = DeadLetter {
        entry_id: entry,
        group: GROUP,
        payload: &payload,
        reason,
        deliveries: 6,
        job: Some(DeadJob {
            job_id: job.job_id.as_str(),
            session_id: job.session_id.as_str(),
            generation: job.generation,
            event: &ev,
        }),
        now_ms: 7,
    };
    dead_letter::parse(&run(conn, dead_letter::SOURCE, &dl.invocation()).await.unwrap()).unwrap();
}

/// Seeds a backup record as the entitled script writes it `pending`, indexed.
async fn seed_pending(conn: &mut MultiplexedConnection, id: &str, session: &str) {
    let _: () = redis::cmd("HSET")
        .arg(keys::backup(id))
        .arg(&[("id", id), ("session_id", session), ("user_id", "user@example.com"), ("state", "pending")])
        .query_async(conn)
        .await
        .unwrap();
    for index in [keys::user_backups("user@example.com"), keys::session_backups(session)] {
        let _: () = redis::cmd("ZADD").arg(index).arg(1).arg(id).query_async(conn).await.unwrap();
    }
}

#[tokio::test]
async fn a_pending_backup_is_settled_by_its_jobs_finish() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let (del, _) = enqueue(&mut conn, "abc", Command::Delete, 1, 2).await;
    let entries = deliver(&mut conn, "c1", 10).await;

    // Failed without a backup written: the pending one fails with the job's error.
    seed_pending(&mut conn, "abc-2", "abc").await;
    let why = "create Job ws-abc-backup-g2: 403 Forbidden";
    let up = update(1, SessionState::Failed, 0);
    let reply = finish_pending(&mut conn, &del, &entries[1], JobState::Failed, up, Some(why), Some("abc-2")).await;
    assert_eq!(reply, FinishReply::Finished);
    let bk = keys::backup("abc-2");
    assert_eq!(hget(&mut conn, &bk, record::backup::STATE).await.as_deref(), Some("failed"));
    assert_eq!(hget(&mut conn, &bk, record::backup::ERROR).await.as_deref(), Some(why));

    // Superseded with its backup still pending: failed too (a backup Job may have left a
    // file, which retention removes once the record is old enough).
    let (again, _) = enqueue(&mut conn, "abc", Command::Delete, 2, 3).await;
    let entries = deliver(&mut conn, "c1", 10).await;
    seed_pending(&mut conn, "abc-3", "abc").await;
    let reply = finish_pending(&mut conn, &again, &entries[0], JobState::Superseded, None, None, Some("abc-3")).await;
    assert_eq!(reply, FinishReply::Finished);
    let bk3 = keys::backup("abc-3");
    assert_eq!(hget(&mut conn, &bk3, record::backup::STATE).await.as_deref(), Some("failed"));
    assert_eq!(
        hget(&mut conn, &bk3, record::backup::ERROR).await.as_deref(),
        Some("the superseded job recorded no backup")
    );

    // Succeeded without taking a backup (nothing to back up): the pending record goes,
    // index entries too.
    let (last, _) = enqueue(&mut conn, "abc", Command::Delete, 3, 4).await;
    let entries = deliver(&mut conn, "c1", 10).await;
    seed_pending(&mut conn, "abc-4", "abc").await;
    let up = update(1, SessionState::Deleted, 0);
    let reply = finish_pending(&mut conn, &last, &entries[0], JobState::Succeeded, up, None, Some("abc-4")).await;
    assert_eq!(reply, FinishReply::Finished);
    let exists: bool = redis::cmd("EXISTS").arg(keys::backup("abc-4")).query_async(&mut conn).await.unwrap();
    assert!(!exists, "no backup was taken");
    for index in [keys::user_backups("user@example.com"), keys::session_backups("abc")] {
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
        assert_eq!(ids, ["abc-2", "abc-3"], "{index}");
    }
    // A record no longer pending is never touched by a finish without a backup.
    assert_eq!(hget(&mut conn, &bk, record::backup::STATE).await.as_deref(), Some("failed"));
}

#[tokio::test]
async fn a_dead_jobs_pending_backup_fails_with_the_reason() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let (del, _) = enqueue(&mut conn, "abc", Command::Delete, 1, 2).await;
    let entries = deliver(&mut conn, "c1", 10).await;
    seed_pending(&mut conn, &record::backup::id("abc", del.generation), "abc").await;
    dead_letter_job(&mut conn, &del, &entries[1], "delivered 6 times (limit 5)").await;
    let bk = keys::backup(&record::backup::id("abc", del.generation));
    assert_eq!(hget(&mut conn, &bk, record::backup::STATE).await.as_deref(), Some("failed"));
    assert_eq!(hget(&mut conn, &bk, record::backup::ERROR).await.as_deref(), Some("delivered 6 times (limit 5)"));
}

#[tokio::test]
async fn dead_letter_keeps_the_entry_and_marks_the_job() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    let (job, _) = enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let _: String = redis::cmd("XADD")
        .arg(keys::JOBS_STREAM)
        .arg("*")
        .arg(keys::PAYLOAD_FIELD)
        .arg(&b"\xc1garbage"[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let entries = deliver(&mut conn, "c1", 10).await;
    dead_letter_job(&mut conn, &job, &entries[0], "delivered 6 times (limit 5)").await;
    let poison = DeadLetter {
        entry_id: &entries[1],
        group: GROUP,
        payload: b"\xc1garbage",
        reason: "undecodable payload",
        deliveries: 5,
        job: None,
        now_ms: 7,
    };
    dead_letter::parse(&run(&mut conn, dead_letter::SOURCE, &poison.invocation()).await.unwrap()).unwrap();

    assert_eq!(pending_count(&mut conn).await, 0);
    let jk = keys::job(job.job_id.as_str());
    assert_eq!(hget(&mut conn, &jk, "state").await.as_deref(), Some("dead"));
    assert_eq!(hget(&mut conn, &jk, "error").await.as_deref(), Some("delivered 6 times (limit 5)"));
    let sk = keys::session("abc");
    assert_eq!(hget(&mut conn, &sk, "last_error").await.as_deref(), Some("delivered 6 times (limit 5)"));
    assert_eq!(hget(&mut conn, &sk, "status").await.as_deref(), Some("failed"));
    let dead: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(keys::DEAD_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    assert_eq!(dead.ids.len(), 2);
    let field = |i: usize, f: &str| match &dead.ids[i].map[f] {
        redis::Value::BulkString(b) => b.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(field(0, "original_id"), entries[0].as_bytes());
    assert_eq!(field(1, "job"), b"\xc1garbage");
    assert_eq!(field(1, "deliveries"), b"5");
    assert_eq!(field(1, "reason"), b"undecodable payload");
}

#[tokio::test]
async fn trim_never_removes_pending_or_unread_entries() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let trim_now = |conn: &mut MultiplexedConnection| {
        let inv = trim::invocation();
        let mut c = conn.clone();
        async move { TrimReply::parse(&run(&mut c, trim::SOURCE, &inv).await.unwrap()).unwrap() }
    };
    assert!(matches!(trim_now(&mut conn).await, TrimReply::Skipped { .. }));
    group(&mut conn).await;
    // A second group that has read nothing holds everything back.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::JOBS_STREAM)
        .arg("audit")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    for seed in 1..=6u8 {
        let command = if seed == 1 { Command::Create } else { Command::Wake };
        let (_, reply) = enqueue(&mut conn, "abc", command, u64::from(seed) - 1, seed).await;
        assert!(matches!(reply, proto_types::scripts::enqueue::EnqueueReply::Ok { .. }));
    }
    let ids = deliver(&mut conn, "c1", 4).await;
    // Ack 0, 2, 3; entry 1 stays pending; entries 4 and 5 are unread.
    let _: u64 = redis::cmd("XACK")
        .arg(keys::JOBS_STREAM)
        .arg(GROUP)
        .arg(&ids[0])
        .arg(&ids[2])
        .arg(&ids[3])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(trim_now(&mut conn).await, TrimReply::Trimmed { removed: 0, .. }));
    let _: () =
        redis::cmd("XGROUP").arg("DESTROY").arg(keys::JOBS_STREAM).arg("audit").query_async(&mut conn).await.unwrap();

    let TrimReply::Trimmed { removed, min_id } = trim_now(&mut conn).await else { panic!() };
    assert_eq!(removed, 1, "only the acknowledged entry below the pending one goes");
    assert_eq!(min_id, ids[1]);
    let left: u64 = redis::cmd("XLEN").arg(keys::JOBS_STREAM).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 5);

    let _: u64 =
        redis::cmd("XACK").arg(keys::JOBS_STREAM).arg(GROUP).arg(&ids[1]).query_async(&mut conn).await.unwrap();
    let TrimReply::Trimmed { removed, min_id } = trim_now(&mut conn).await else { panic!() };
    assert_eq!(removed, 2);
    assert_eq!(min_id, ids[3], "the last-delivered entry bounds the trim; unread ones stay");
    let unread = deliver(&mut conn, "c1", 10).await;
    assert_eq!(unread.len(), 2, "unread entries survive trimming");
}

#[tokio::test]
async fn touch_resets_idle_only_for_the_owner() {
    use proto_types::scripts::touch;
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    group(&mut conn).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let id = deliver(&mut conn, "c1", 1).await.remove(0);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let owner = |c: &str| touch::invocation(GROUP, c, &id);
    let reply = touch::parse(&run(&mut conn, touch::SOURCE, &owner("c2")).await.unwrap()).unwrap();
    assert_eq!(reply, Some("c1".to_string()), "another consumer cannot steal the entry");
    let reply = touch::parse(&run(&mut conn, touch::SOURCE, &owner("c1")).await.unwrap()).unwrap();
    assert_eq!(reply, None);
    let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(keys::JOBS_STREAM)
        .arg(GROUP)
        .arg(&id)
        .arg(&id)
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.ids[0].consumer, "c1");
    assert_eq!(pending.ids[0].times_delivered, 1, "a heartbeat is not a delivery");
    assert!(pending.ids[0].last_delivered_ms < 50);
    let _: u64 = redis::cmd("XACK").arg(keys::JOBS_STREAM).arg(GROUP).arg(&id).query_async(&mut conn).await.unwrap();
    let reply = touch::parse(&run(&mut conn, touch::SOURCE, &owner("c1")).await.unwrap()).unwrap();
    assert_eq!(reply, Some(String::new()));
}
