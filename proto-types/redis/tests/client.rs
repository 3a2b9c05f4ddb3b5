//! The script runner and the enqueue client against a real redis-server:
//! scripts survive an emptied script cache, commands land on consecutive
//! generations, and refusals write nothing.
#![allow(clippy::unwrap_used)]

use proto_types::scripts::Invocation;
use proto_types::{Command, Refusal, SessionId, SessionState, keys};
use sm_redis::{EnqueueClient, EnqueueError, EnqueueOutcome, EnqueueRequest, Script, SessionRecord};

const ECHO: &str = "return {KEYS[1], ARGV[1]}";

fn echo(key: &str, arg: &str) -> Invocation {
    Invocation { keys: vec![key.to_owned()], args: vec![arg.as_bytes().to_vec()] }
}

#[tokio::test]
async fn a_script_runs_again_after_the_cache_is_flushed() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
    let script = Script::new(ECHO);
    let reply: Vec<String> = script.run(&mut conn, &echo("k", "a")).await.unwrap();
    assert_eq!(reply, ["k", "a"]);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let reply: Vec<String> = script.run(&mut conn, &echo("k", "b")).await.unwrap();
    assert_eq!(reply, ["k", "b"]);
    // Pipelined with a read, before and after another flush.
    let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut conn).await.unwrap();
    let read = |p: &mut redis::Pipeline| {
        p.get("k");
    };
    let (reply, value): (Vec<String>, String) = script.run_pipelined(&mut conn, &echo("k", "c"), read).await.unwrap();
    assert_eq!((reply, value.as_str()), (vec!["k".to_owned(), "c".to_owned()], "v"));
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let (reply, _): (Vec<String>, String) = script.run_pipelined(&mut conn, &echo("k", "d"), read).await.unwrap();
    assert_eq!(reply, ["k", "d"]);
}

#[tokio::test]
async fn commands_land_on_consecutive_generations_and_refusals_write_nothing() {
    let server = testkit::RedisServer::start().unwrap();
    let mut conn = server.client().get_multiplexed_async_connection().await.unwrap();
    let client = EnqueueClient::with_clock(|| 42);
    let create = EnqueueRequest::new(Command::Create, None, "u@example.com", "https://vs-code-{uuid}.example.com");
    let EnqueueOutcome::Accepted(created) = client.enqueue(&mut conn, &create).await.unwrap() else { panic!() };
    assert_eq!(created.status, SessionState::Creating);
    assert_eq!(created.created_at_ms, 42);
    let sid = created.job.session_id.clone();
    assert_eq!(created.workspace_url, format!("https://vs-code-{sid}.example.com"));

    let sleep = EnqueueRequest::new(Command::Sleep, Some(sid.clone()), "", "");
    let EnqueueOutcome::Accepted(slept) = client.enqueue(&mut conn, &sleep).await.unwrap() else { panic!() };
    assert_eq!(slept.job.generation, 2);
    assert_eq!(slept.user_id, "u@example.com", "the stored owner, not the request's");
    let rec = SessionRecord::read(&mut conn, &sid).await.unwrap().unwrap();
    assert_eq!((rec.generation, rec.last_job_id.as_str()), (2, slept.job.job_id.as_str()));

    let missing = EnqueueRequest::new(Command::Wake, Some(SessionId::parse("gone").unwrap()), "", "");
    let refused = client.enqueue(&mut conn, &missing).await;
    assert!(matches!(refused, Err(EnqueueError::Refused(Refusal::NotFound))), "{refused:?}");
    let len: u64 = redis::cmd("XLEN").arg(keys::JOBS_STREAM).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 2);
}
