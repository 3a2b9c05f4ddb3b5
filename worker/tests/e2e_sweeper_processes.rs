//! The lifecycle sweeper end to end with real processes (redis-server,
//! stand-in cluster, api, two workers) and a short `IDLE_SLEEP_AFTER`:
//! an untouched session goes to sleep by itself with a job of origin
//! `idle`, while one kept alive with `POST /session/{uuid}/activity` stays
//! running; and an unused one is deleted past `SESSION_TTL`, backup first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use testkit::stack::{Stack, StackConfig, wait_until};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);

fn create(stack: &Stack) -> String {
    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": "idle@example.com" }))).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    let job = stack.wait_job(v["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap();
    assert_eq!(job["state"], "succeeded", "{job}\n{}", stack.logs());
    v["uuid"].as_str().unwrap().to_owned()
}

fn session(stack: &Stack, id: &str) -> Value {
    stack.api("GET", &format!("/session/{id}"), None).unwrap().json()
}

#[test]
fn an_untouched_session_sleeps_by_itself_and_a_kept_alive_one_does_not() {
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let stack = Stack::start(StackConfig {
        workers: 2,
        worker_env: env(&[("IDLE_SLEEP_AFTER", "3"), ("IDLE_WARNING_BEFORE", "1"), ("SWEEP_INTERVAL_MS", "200")]),
        ..Default::default()
    })
    .unwrap();
    let idle = create(&stack);
    let kept = create(&stack);

    // Keep one alive while waiting for the other to sleep.
    let slept = wait_until(Duration::from_secs(60), || {
        let r = stack.api("POST", &format!("/session/{kept}/activity"), None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let s = session(&stack, &idle);
        (s["session"]["status"] == "sleeping").then_some(s)
    })
    .unwrap_or_else(|| panic!("the idle session never slept: {}\n{}", session(&stack, &idle), stack.logs()));

    let job_id = slept["last_job_id"].as_str().unwrap();
    let job = stack.api("GET", &format!("/jobs/{job_id}"), None).unwrap().json();
    assert_eq!((job["command"].as_str(), job["origin"].as_str()), (Some("sleep"), Some("idle")), "{job}");
    assert_eq!(slept["last_transition"]["to"], "sleeping", "{slept}");
    assert_eq!(slept["last_transition"]["origin"], "idle", "{slept}");
    assert_eq!(slept["replicas"], 0);

    let k = session(&stack, &kept);
    assert_eq!(k["session"]["status"], "running", "{k}\n{}", stack.logs());
    assert_eq!(k["next_action"]["action"], "sleep", "{k}");
    let create_job = stack.api("GET", &format!("/jobs/{}", k["last_job_id"].as_str().unwrap()), None).unwrap().json();
    assert_eq!(create_job["command"], "create", "no automatic job for the kept-alive session: {create_job}");
}

#[test]
fn an_unused_session_is_deleted_past_its_ttl_with_its_backup() {
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let stack = Stack::start(StackConfig {
        workers: 1,
        worker_env: env(&[("IDLE_SLEEP_AFTER", "0"), ("SESSION_TTL", "3"), ("SWEEP_INTERVAL_MS", "200")]),
        ..Default::default()
    })
    .unwrap();
    let id = create(&stack);
    let gone = wait_until(Duration::from_secs(60), || {
        let s = session(&stack, &id);
        (s["session"]["status"] == "deleted").then_some(s)
    })
    .unwrap_or_else(|| panic!("the unused session was never deleted: {}\n{}", session(&stack, &id), stack.logs()));

    let job = stack.api("GET", &format!("/jobs/{}", gone["last_job_id"].as_str().unwrap()), None).unwrap().json();
    assert_eq!((job["command"].as_str(), job["origin"].as_str()), (Some("delete"), Some("ttl")), "{job}");
    assert_eq!(gone["last_transition"]["origin"], "ttl", "{gone}");
    let file = gone["backup_file"].as_str().unwrap_or_else(|| panic!("deleted without a backup: {gone}"));
    let backups = stack.api("GET", &format!("/session/{id}/backups"), None).unwrap().json();
    let list = backups["backups"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{backups}");
    assert_eq!((list[0]["state"].as_str(), list[0]["location"].as_str()), (Some("succeeded"), Some(file)), "{backups}");
}
