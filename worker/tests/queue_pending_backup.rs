//! A backup is listed `pending` from the moment the worker is entitled to create it
//! (the check right before the backup Job or VolumeSnapshot is created) until the job
//! ends: then it is `succeeded` with what was verified, or `failed` with the job's error.
//! Real Redis, the real runner, an in-memory executor that checks like the Kubernetes one.
#![allow(clippy::unwrap_used)]

mod queue_support;

use std::sync::Arc;
use std::time::Duration;

use proto_types::{BackupKind, Command, keys, record};
use queue_support::*;

const WAIT: Duration = Duration::from_secs(15);

async fn backup_state(conn: &mut redis::aio::MultiplexedConnection, id: &str) -> Option<String> {
    hget(conn, &keys::backup(id), record::backup::STATE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_pending_while_it_is_taken_then_succeeded() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let hold = Arc::new(tokio::sync::Notify::new());
    let exec = FakeExecutor::default();
    exec.plan("abc", Plan { backup: Some(BackupKind::Snapshot), hold: Some(Arc::clone(&hold)), ..Plan::default() });
    let runner = spawn(&server, &exec, config("a"));
    let create = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    until_state(&server, &create, "succeeded", WAIT).await;
    let delete = enqueue(&mut conn, "abc", Command::Delete).await.unwrap();
    let id = record::backup::id("abc", delete.generation);

    eventually(WAIT, "the backup recorded pending", || {
        let (mut c, id) = (conn.clone(), id.clone());
        async move { backup_state(&mut c, &id).await.as_deref() == Some(record::backup::STATE_PENDING) }
    })
    .await;
    let bk = keys::backup(&id);
    assert_eq!(hget(&mut conn, &bk, record::backup::KIND).await.as_deref(), Some("snapshot"));
    assert_eq!(hget(&mut conn, &bk, record::backup::USER).await.as_deref(), Some("user@example.com"));
    let listed: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys::user_backups("user@example.com"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(listed, [id.as_str()], "listed for its user while pending");
    assert_eq!(job_state(&mut conn, &delete).await.as_deref(), Some("running"));

    hold.notify_one();
    until_state(&server, &delete, "succeeded", WAIT).await;
    assert_eq!(backup_state(&mut conn, &id).await.as_deref(), Some(record::backup::STATE_SUCCEEDED));
    assert_eq!(hget(&mut conn, &bk, record::backup::SIZE_BYTES).await.as_deref(), Some("42"));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_backup_of_a_failed_job_is_failed_with_its_error() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    let why = "create VolumeSnapshot ws-abc-snap-g2: 403 Forbidden";
    exec.plan("abc", Plan { backup: Some(BackupKind::Snapshot), permanent: Some(why.into()), ..Plan::default() });
    let create = enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    let delete = enqueue(&mut conn, "abc", Command::Delete).await.unwrap();
    let runner = spawn(&server, &exec, config("a"));
    until_state(&server, &delete, "failed", WAIT).await;
    assert_eq!(job_state(&mut conn, &create).await.as_deref(), Some("superseded"));
    let id = record::backup::id("abc", delete.generation);
    assert_eq!(backup_state(&mut conn, &id).await.as_deref(), Some(record::backup::STATE_FAILED));
    assert_eq!(hget(&mut conn, &keys::backup(&id), record::backup::ERROR).await.as_deref(), Some(why));
    runner.shutdown().await;
}

/// A delivery that recorded the backup `pending` and then crashed, redelivered after a newer
/// delete superseded it: the superseded job's finish fails the pending backup (a Job may have
/// left a file; retention removes it with the record) instead of leaving it pending forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_jobs_pending_backup_is_failed() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let exec = FakeExecutor::default();
    exec.plan("abc", Plan { backup: Some(BackupKind::Archive), ..Plan::default() });
    enqueue(&mut conn, "abc", Command::Create).await.unwrap();
    let first = enqueue(&mut conn, "abc", Command::Delete).await.unwrap();
    let id = record::backup::id("abc", first.generation);
    // What the crashed delivery's entitled check wrote.
    let _: () = redis::cmd("HSET")
        .arg(keys::backup(&id))
        .arg(&[("id", id.as_str()), ("session_id", "abc"), ("user_id", "user@example.com"), ("state", "pending")])
        .query_async(&mut conn)
        .await
        .unwrap();
    let second = enqueue(&mut conn, "abc", Command::Delete).await.unwrap();
    let runner = spawn(&server, &exec, config("a"));
    until_state(&server, &second, "succeeded", WAIT).await;
    assert_eq!(job_state(&mut conn, &first).await.as_deref(), Some("superseded"));
    assert_eq!(backup_state(&mut conn, &id).await.as_deref(), Some(record::backup::STATE_FAILED));
    let second_id = record::backup::id("abc", second.generation);
    assert_eq!(backup_state(&mut conn, &second_id).await.as_deref(), Some(record::backup::STATE_SUCCEEDED));
    runner.shutdown().await;
}
