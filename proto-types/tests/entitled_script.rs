//! The entitled script against a real redis-server: the one atomic check a
//! worker makes right before each Kubernetes create.
#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, enqueue, run};
use proto_types::Command;
use proto_types::scripts::entitled::{self, EntitledReply};
use proto_types::scripts::lease::{self, Acquire, AcquireReply, Lease};

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
    let inv = entitled::invocation(lease, generation, backup);
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
