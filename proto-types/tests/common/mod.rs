//! Shared helpers for the script tests: run a script's [`Invocation`]
//! against a private redis-server with the shared runner, and enqueue
//! fixture jobs with the api's enqueue client.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use proto_types::scripts::Invocation;
use proto_types::scripts::enqueue::EnqueueReply;
use proto_types::{Command, Job, JobId, SessionId};
use redis::aio::MultiplexedConnection;
use sm_redis::{Attempt, EnqueueClient, EnqueueRequest, Script, SessionRecord};

pub async fn connect(server: &testkit::RedisServer) -> MultiplexedConnection {
    server.client().get_multiplexed_async_connection().await.unwrap()
}

pub async fn run(conn: &mut MultiplexedConnection, source: &str, inv: &Invocation) -> redis::RedisResult<Vec<String>> {
    Script::new(source).run(conn, inv).await
}

pub fn job(session: &str, command: Command, generation: u64, seed: u8) -> Job {
    let mut job = Job::test(session, command, generation);
    job.job_id = JobId::from_random([seed; 16]);
    job.session_id = SessionId::parse(session).unwrap();
    job
}

/// Enqueues `command` for `session` through the real enqueue script,
/// deciding like the api does ([`sm_redis::Attempt`]) on the session as
/// read at `expected_generation` (older than the stored one when a test
/// plays a lost race). Create decides on no session, like the api's.
pub async fn enqueue(
    conn: &mut MultiplexedConnection,
    session: &str,
    command: Command,
    expected_generation: u64,
    seed: u8,
) -> (Job, EnqueueReply) {
    let id = SessionId::parse(session).unwrap();
    let req = EnqueueRequest::new(command, Some(id.clone()), "user@example.com", "https://vs-code.example.com");
    let current = if command == Command::Create {
        None
    } else {
        let mut read = SessionRecord::read(conn, &id).await.unwrap().unwrap();
        read.generation = expected_generation;
        Some(read)
    };
    let attempt = Attempt::prepare(&req, id, current.as_ref(), JobId::from_random([seed; 16]), 1_000).unwrap();
    let reply = EnqueueClient::new().submit(conn, &req, &attempt).await.unwrap();
    (attempt.job, reply)
}

pub async fn hget(conn: &mut MultiplexedConnection, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(field).query_async(conn).await.unwrap()
}
