//! Shared helpers for the script tests: run a script's [`Invocation`]
//! against a private redis-server, and enqueue fixture jobs.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use proto_types::scripts::Invocation;
use proto_types::scripts::enqueue::{Enqueue, EnqueueReply};
use proto_types::{Command, Job, JobId, SessionId, machine};
use redis::aio::MultiplexedConnection;

pub async fn connect(server: &testkit::RedisServer) -> MultiplexedConnection {
    server.client().get_multiplexed_async_connection().await.unwrap()
}

pub async fn run(conn: &mut MultiplexedConnection, source: &str, inv: &Invocation) -> redis::RedisResult<Vec<String>> {
    let script = redis::Script::new(source);
    let mut call = script.prepare_invoke();
    for k in &inv.keys {
        call.key(k);
    }
    for a in &inv.args {
        call.arg(a.as_slice());
    }
    call.invoke_async(conn).await
}

pub fn job(session: &str, command: Command, generation: u64, seed: u8) -> Job {
    let mut job = Job::test(session, command, generation);
    job.job_id = JobId::from_random([seed; 16]);
    job.session_id = SessionId::parse(session).unwrap();
    job
}

/// Enqueues `command` for `session` through the real enqueue script,
/// deciding with the state machine like the api does.
pub async fn enqueue(
    conn: &mut MultiplexedConnection,
    session: &str,
    command: Command,
    expected_generation: u64,
    seed: u8,
) -> (Job, EnqueueReply) {
    let job = job(session, command, expected_generation + 1, seed);
    let current = if command == Command::Create {
        None
    } else {
        let (status, desired): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(proto_types::keys::session(session))
            .arg("status")
            .arg("desired")
            .query_async(conn)
            .await
            .unwrap();
        Some(machine::SessionView {
            status: proto_types::SessionState::parse(&status.unwrap()).unwrap(),
            desired: proto_types::DesiredState::parse(&desired.unwrap()).unwrap(),
        })
    };
    let decision = machine::decide(current, command).unwrap();
    let payload = job.encode().unwrap();
    let inv = Enqueue {
        job: &job,
        payload: &payload,
        expected_generation,
        desired: decision.desired,
        status: decision.status,
        user_id: "user@example.com",
        max_sessions_per_user: 0,
        workspace_url: "https://vs-code.example.com",
        idempotency: None,
        now_ms: 1_000,
    }
    .invocation();
    let reply = run(conn, proto_types::scripts::enqueue::SOURCE, &inv).await.unwrap();
    (job, EnqueueReply::parse(&reply).unwrap())
}

pub async fn hget(conn: &mut MultiplexedConnection, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(field).query_async(conn).await.unwrap()
}
