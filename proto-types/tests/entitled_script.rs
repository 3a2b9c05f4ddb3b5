//! The entitled script against a real redis-server: the one atomic check a
//! worker makes right before each Kubernetes create.
#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, enqueue, hget, run};
use proto_types::scripts::entitled::{self, EntitledReply, PendingBackup};
use proto_types::scripts::lease::{self, Acquire, AcquireReply, Lease};
use proto_types::{BackupKind, Command, keys, record};

async fn take(conn: &mut redis::aio::MultiplexedConnection, session: &str, owner: &str) -> Lease {
    let inv = Acquire { session_id: session, owner, ttl_ms: 30_000 }.invocation();
    match AcquireReply::parse(&run(conn, lease::ACQUIRE_SOURCE, &inv).await.unwrap()).unwrap() {
        AcquireReply::Acquired { token } => Lease { session_id: session.into(), owner: owner.into(), token },
        held => panic!("lease held: {held:?}"),
    }
}

async fn ask_for(
    conn: &mut redis::aio::MultiplexedConnection,
    lease: &Lease,
    generation: u64,
    backup: bool,
) -> EntitledReply {
    let inv = entitled::invocation(lease, generation, backup, None);
    EntitledReply::parse(&run(conn, entitled::SOURCE, &inv).await.unwrap()).unwrap()
}

async fn ask(conn: &mut redis::aio::MultiplexedConnection, lease: &Lease, generation: u64) -> EntitledReply {
    ask_for(conn, lease, generation, false).await
}

#[tokio::test]
async fn only_the_current_holder_of_the_current_generation_may_create() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let s = "11111111-1111-4111-8111-111111111111";
    let (create, _) = enqueue(&mut conn, s, Command::Create, 0, 1).await;
    let mine = take(&mut conn, s, "w1:1-0").await;
    assert_eq!(ask(&mut conn, &mine, create.generation).await, EntitledReply::Entitled);

    // A newer holder took over after our lease expired.
    let _: () = redis::cmd("DEL").arg(proto_types::keys::lease(s)).query_async(&mut conn).await.unwrap();
    let theirs = take(&mut conn, s, "w2:1-0").await;
    assert_eq!(ask(&mut conn, &mine, create.generation).await, EntitledReply::Lost);
    assert_eq!(ask(&mut conn, &theirs, create.generation).await, EntitledReply::Entitled);

    // The session moved on: a sleep, then a delete.
    let (sleep, _) = enqueue(&mut conn, s, Command::Sleep, create.generation, 2).await;
    assert_eq!(
        ask(&mut conn, &theirs, create.generation).await,
        EntitledReply::Superseded { generation: sleep.generation }
    );
    let (delete, _) = enqueue(&mut conn, s, Command::Delete, sleep.generation, 3).await;
    assert_eq!(ask(&mut conn, &theirs, delete.generation).await, EntitledReply::Deleted, "no workspace object");
    assert_eq!(ask_for(&mut conn, &theirs, delete.generation, true).await, EntitledReply::Entitled, "its backup Job");
    assert_eq!(ask_for(&mut conn, &mine, delete.generation, true).await, EntitledReply::Lost);
}

#[tokio::test]
async fn an_entitled_backup_create_records_the_backup_pending_once() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = connect(&server).await;
    let s = "22222222-2222-4222-8222-222222222222";
    let (_, _) = enqueue(&mut conn, s, Command::Create, 0, 1).await;
    let (delete, _) = enqueue(&mut conn, s, Command::Delete, 1, 2).await;
    let mine = take(&mut conn, s, "w1:1-0").await;
    let id = record::backup::id(s, delete.generation);
    let pending = PendingBackup { id: &id, kind: BackupKind::Snapshot, user_id: "u1", now_ms: 500 };
    let ask_pending =
        |lease: &Lease, backup: bool| entitled::invocation(lease, delete.generation, backup, Some(&pending));

    // Refused (another holder): nothing is recorded.
    let stale = Lease { owner: "w0:1-0".into(), ..mine.clone() };
    let reply = EntitledReply::parse(&run(&mut conn, entitled::SOURCE, &ask_pending(&stale, true)).await.unwrap());
    assert_eq!(reply.unwrap(), EntitledReply::Lost);
    // A workspace create never records a backup, even when handed one.
    let reply = EntitledReply::parse(&run(&mut conn, entitled::SOURCE, &ask_pending(&mine, false)).await.unwrap());
    assert_eq!(reply.unwrap(), EntitledReply::Deleted);
    let exists: bool = redis::cmd("EXISTS").arg(keys::backup(&id)).query_async(&mut conn).await.unwrap();
    assert!(!exists);

    let reply = EntitledReply::parse(&run(&mut conn, entitled::SOURCE, &ask_pending(&mine, true)).await.unwrap());
    assert_eq!(reply.unwrap(), EntitledReply::Entitled);
    let bk = keys::backup(&id);
    for (field, want) in [
        (record::backup::ID, id.as_str()),
        (record::backup::SESSION, s),
        (record::backup::USER, "u1"),
        (record::backup::STATE, record::backup::STATE_PENDING),
        (record::backup::KIND, "snapshot"),
        (record::backup::CREATED_AT, "500"),
        (record::backup::LOCATION, ""),
    ] {
        assert_eq!(hget(&mut conn, &bk, field).await.as_deref(), Some(want), "{field}");
    }
    for index in [keys::user_backups("u1"), keys::session_backups(s)] {
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query_async(&mut conn).await.unwrap();
        assert_eq!(ids, [id.as_str()], "{index}");
    }
    // A retried create finds the record and leaves it as it is.
    let _: () = redis::cmd("HSET").arg(&bk).arg("state").arg("succeeded").query_async(&mut conn).await.unwrap();
    run(&mut conn, entitled::SOURCE, &ask_pending(&mine, true)).await.unwrap();
    assert_eq!(hget(&mut conn, &bk, record::backup::STATE).await.as_deref(), Some("succeeded"));
}
