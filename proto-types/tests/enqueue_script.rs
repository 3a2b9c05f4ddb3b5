//! The enqueue script against a real redis-server: accepted jobs, stale
//! generations, idempotency keys and the per-user limit.
#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, enqueue, hget, job, run};
use proto_types::scripts::enqueue::{Enqueue, EnqueueReply, SOURCE};
use proto_types::{Command, DesiredState, Job, SessionState, keys, record};

fn create<'a>(job: &'a Job, payload: &'a [u8], limit: u32, idem: Option<(&'a str, &'a str, &'a str)>) -> Enqueue<'a> {
    Enqueue {
        job,
        payload,
        expected_generation: 0,
        desired: DesiredState::Running,
        status: SessionState::Creating,
        user_id: "u1",
        max_sessions_per_user: limit,
        workspace_url: "https://vs-code-x.example.com",
        idempotency: idem,
        now_ms: 42,
        idle_timeout_secs: None,
        restore: None,
    }
}

#[tokio::test]
async fn ok_records_job_session_and_stream_entry() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let (job, reply) = enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    let EnqueueReply::Ok { stream_id } = reply else { panic!("{reply:?}") };
    let session = keys::session("abc");
    assert_eq!(hget(&mut conn, &session, "generation").await.as_deref(), Some("1"));
    assert_eq!(hget(&mut conn, &session, "desired").await.as_deref(), Some("running"));
    assert_eq!(hget(&mut conn, &session, "status").await.as_deref(), Some("creating"));
    let jk = keys::job(job.job_id.as_str());
    assert_eq!(hget(&mut conn, &jk, "state").await.as_deref(), Some("queued"));
    assert_eq!(hget(&mut conn, &jk, "stream_id").await, Some(stream_id.clone()));
    type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
    let entries: Entries =
        redis::cmd("XRANGE").arg(keys::JOBS_STREAM).arg("-").arg("+").query_async(&mut conn).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, stream_id);
    assert_eq!(Job::decode(&entries[0].1[0].1).unwrap(), job);
}

#[tokio::test]
async fn stale_generation_conflicts_and_writes_nothing() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    enqueue(&mut conn, "abc", Command::Create, 0, 1).await;
    enqueue(&mut conn, "abc", Command::Sleep, 1, 2).await;
    // A decision made on generation 1 arrives after generation 2 exists.
    let (stale, reply) = enqueue(&mut conn, "abc", Command::Wake, 1, 3).await;
    assert_eq!(reply, EnqueueReply::Conflict { current_generation: 2 });
    assert_eq!(hget(&mut conn, &keys::session("abc"), "desired").await.as_deref(), Some("sleeping"));
    assert_eq!(hget(&mut conn, &keys::job(stale.job_id.as_str()), "state").await, None);
    let len: u64 = redis::cmd("XLEN").arg(keys::JOBS_STREAM).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 2);
}

#[tokio::test]
async fn idempotency_key_answers_same_or_different() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let first = job("abc", Command::Create, 1, 1);
    let payload = first.encode().unwrap();
    let inv = create(&first, &payload, 0, Some(("client", "k1", "fp-a"))).invocation();
    let reply = EnqueueReply::parse(&run(&mut conn, SOURCE, &inv).await.unwrap()).unwrap();
    assert!(matches!(reply, EnqueueReply::Ok { .. }));

    let retry = job("abc", Command::Create, 1, 2);
    let payload = retry.encode().unwrap();
    let same = create(&retry, &payload, 0, Some(("client", "k1", "fp-a"))).invocation();
    assert_eq!(
        EnqueueReply::parse(&run(&mut conn, SOURCE, &same).await.unwrap()).unwrap(),
        EnqueueReply::Idempotent { job_id: first.job_id.to_string(), same_request: true }
    );
    let different = create(&retry, &payload, 0, Some(("client", "k1", "fp-b"))).invocation();
    assert_eq!(
        EnqueueReply::parse(&run(&mut conn, SOURCE, &different).await.unwrap()).unwrap(),
        EnqueueReply::Idempotent { job_id: first.job_id.to_string(), same_request: false }
    );
    let len: u64 = redis::cmd("XLEN").arg(keys::JOBS_STREAM).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 1, "a replayed request must not enqueue twice");
}

#[tokio::test]
async fn per_user_limit_refuses_create() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    for (i, id) in ["s1", "s2"].iter().enumerate() {
        let j = job(id, Command::Create, 1, i as u8 + 1);
        let payload = j.encode().unwrap();
        let reply =
            EnqueueReply::parse(&run(&mut conn, SOURCE, &create(&j, &payload, 2, None).invocation()).await.unwrap());
        assert!(matches!(reply, Ok(EnqueueReply::Ok { .. })), "{reply:?}");
    }
    let third = job("s3", Command::Create, 1, 9);
    let payload = third.encode().unwrap();
    let reply =
        EnqueueReply::parse(&run(&mut conn, SOURCE, &create(&third, &payload, 2, None).invocation()).await.unwrap());
    assert_eq!(reply, Ok(EnqueueReply::LimitReached { live: 2 }));
    let exists: bool = redis::cmd("EXISTS").arg(keys::session("s3")).query_async(&mut conn).await.unwrap();
    assert!(!exists);
}

/// Seeds an archive backup record as the worker's finish writes it.
async fn seed_backup(conn: &mut redis::aio::MultiplexedConnection, id: &str, user: &str, state: &str) {
    seed_kind(conn, id, user, state, "archive", "app-old-20261201-101010.zip").await;
}

async fn seed_kind(
    conn: &mut redis::aio::MultiplexedConnection,
    id: &str,
    user: &str,
    state: &str,
    kind: &str,
    location: &str,
) {
    let _: () = redis::cmd("HSET")
        .arg(keys::backup(id))
        .arg(&[
            ("id", id),
            ("user_id", user),
            ("state", state),
            ("kind", kind),
            ("location", location),
            ("size_bytes", "5243012"),
            ("sha256", "ab"),
        ])
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn restore_from_is_checked_before_anything_is_written() {
    use proto_types::scripts::enqueue::{RestoreFrom, RestoreRefusal};
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    seed_backup(&mut conn, "old-g2", "u1", "succeeded").await;
    seed_backup(&mut conn, "theirs-g2", "u2", "succeeded").await;
    seed_backup(&mut conn, "gone-g2", "u1", "deleted").await;
    seed_backup(&mut conn, "bad-g2", "u1", "failed").await;
    let cases = [
        ("nope-g1", false, RestoreRefusal::Missing),
        ("theirs-g2", false, RestoreRefusal::Missing),
        ("gone-g2", false, RestoreRefusal::Gone),
        ("bad-g2", false, RestoreRefusal::Unusable("failed".into())),
    ];
    for (i, (backup_id, any_user, want)) in cases.into_iter().enumerate() {
        let j = job("s1", Command::Create, 1, i as u8 + 1);
        let payload = j.encode().unwrap();
        let mut e = create(&j, &payload, 0, Some(("client", "k", "fp")));
        e.restore = Some(RestoreFrom { backup_id, any_user });
        let reply = EnqueueReply::parse(&run(&mut conn, SOURCE, &e.invocation()).await.unwrap()).unwrap();
        assert_eq!(reply, EnqueueReply::Restore(want), "{backup_id}");
    }
    // Nothing was written: no session, no job, no stream entry, no key.
    let n: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(n, 4, "only the four seeded backups exist");

    // An admin may restore another user's backup; the source is copied.
    let j = job("s1", Command::Create, 1, 9);
    let payload = j.encode().unwrap();
    let mut e = create(&j, &payload, 0, None);
    e.restore = Some(RestoreFrom { backup_id: "theirs-g2", any_user: true });
    let reply = EnqueueReply::parse(&run(&mut conn, SOURCE, &e.invocation()).await.unwrap()).unwrap();
    assert!(matches!(reply, EnqueueReply::Ok { .. }), "{reply:?}");
    let sk = keys::session("s1");
    assert_eq!(hget(&mut conn, &sk, record::session::RESTORE_FROM).await.as_deref(), Some("theirs-g2"));
    assert_eq!(
        hget(&mut conn, &sk, record::session::RESTORE_LOCATION).await.as_deref(),
        Some("app-old-20261201-101010.zip")
    );
    assert_eq!(hget(&mut conn, &sk, record::session::RESTORE_SIZE_BYTES).await.as_deref(), Some("5243012"));
    assert_eq!(hget(&mut conn, &sk, record::session::RESTORE_SHA256).await.as_deref(), Some("ab"));
    assert_eq!(hget(&mut conn, &sk, "user_id").await.as_deref(), Some("u1"));
}

#[tokio::test]
async fn a_snapshot_backup_is_restorable_and_its_kind_is_copied() {
    use proto_types::scripts::enqueue::{RestoreFrom, RestoreRefusal};
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    seed_kind(&mut conn, "snap-g2", "u1", "succeeded", "snapshot", "ws-snap-snap-g2").await;
    seed_kind(&mut conn, "odd-g2", "u1", "succeeded", "tape", "t1").await;
    let j = job("s1", Command::Create, 1, 1);
    let payload = j.encode().unwrap();
    let mut e = create(&j, &payload, 0, None);
    e.restore = Some(RestoreFrom { backup_id: "odd-g2", any_user: false });
    let reply = EnqueueReply::parse(&run(&mut conn, SOURCE, &e.invocation()).await.unwrap()).unwrap();
    assert_eq!(reply, EnqueueReply::Restore(RestoreRefusal::Unusable("succeeded".into())), "unknown kind");

    e.restore = Some(RestoreFrom { backup_id: "snap-g2", any_user: false });
    let reply = EnqueueReply::parse(&run(&mut conn, SOURCE, &e.invocation()).await.unwrap()).unwrap();
    assert!(matches!(reply, EnqueueReply::Ok { .. }), "{reply:?}");
    let sk = keys::session("s1");
    assert_eq!(hget(&mut conn, &sk, record::session::RESTORE_KIND).await.as_deref(), Some("snapshot"));
    assert_eq!(hget(&mut conn, &sk, record::session::RESTORE_LOCATION).await.as_deref(), Some("ws-snap-snap-g2"));
}
