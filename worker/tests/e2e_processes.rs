//! End to end with real processes: redis-server + stand-in cluster + api +
//! worker(s), driven over HTTP like a client would.
//!
//! The stand-in records every Kubernetes call the workers make into
//! `target/k8s-calls/`, which `make deploy-check` compares against the
//! worker's Role (every call allowed, every grant used).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use testkit::stack::{Stack, StackConfig, calls_file, wait_until};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);
const NS: &str = "/namespaces/workspaces";

fn command(stack: &Stack, id: &str, action: &str) -> String {
    let r = if action == "delete" {
        stack.api("DELETE", &format!("/session/{id}"), None).unwrap()
    } else {
        stack.api("POST", &format!("/session/{id}/{action}"), None).unwrap()
    };
    assert_eq!(r.status, 202, "{action} {id}: {}", r.text());
    r.json()["job_id"].as_str().unwrap().to_owned()
}

fn create(stack: &Stack, user: &str) -> (String, String) {
    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": user }))).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    (v["uuid"].as_str().unwrap().to_owned(), v["job_id"].as_str().unwrap().to_owned())
}

fn session(stack: &Stack, id: &str) -> Value {
    stack.api("GET", &format!("/session/{id}"), None).unwrap().json()
}

/// The session's `upstream` field in Redis (the real-process test,
/// `e2e_workspace_processes.rs`, checks its value while running).
fn upstream(stack: &Stack, id: &str) -> Option<String> {
    let mut c = redis::Client::open(stack.redis.url()).unwrap().get_connection().unwrap();
    redis::cmd("HGET")
        .arg(proto_types::keys::session(id))
        .arg(proto_types::record::session::UPSTREAM)
        .query(&mut c)
        .unwrap()
}

fn deployment(stack: &Stack, id: &str) -> Value {
    stack.kube_get(&format!("/apis/apps/v1{NS}/deployments/ws-{id}")).unwrap().json()
}

fn assert_succeeded(stack: &Stack, job: &str) -> Value {
    let v = stack.wait_job(job, JOB_TIMEOUT).unwrap();
    assert_eq!(v["state"], "succeeded", "job {job}: {v}\n{}", stack.logs());
    v
}

/// In `WORKSPACE_ROUTING=ingress` (the seed's per-session Ingress), so the
/// recorded calls cover the Role's Ingress grants too.
#[test]
fn lifecycle_create_sleep_wake_delete_through_the_api() {
    let stack = Stack::start(StackConfig {
        workers: 1,
        record_calls: Some(calls_file("e2e-lifecycle").unwrap()),
        worker_env: vec![("WORKSPACE_ROUTING".to_owned(), "ingress".to_owned())],
        ..Default::default()
    })
    .unwrap();

    let (id, job) = create(&stack, "e2e@example.com");
    assert_succeeded(&stack, &job);
    let s = session(&stack, &id);
    assert_eq!(s["session"]["status"], "running", "{s}");
    assert_eq!(s["replicas"], 1, "{s}");
    for path in [
        format!("/api/v1{NS}/persistentvolumeclaims/ws-{id}-data"),
        format!("/api/v1{NS}/services/ws-{id}"),
        format!("/apis/networking.k8s.io/v1{NS}/ingresses/ws-{id}"),
        format!("/apis/keda.sh/v1alpha1{NS}/scaledobjects/ws-{id}"),
    ] {
        assert_eq!(stack.kube_get(&path).unwrap().status, 200, "{path} exists after create");
    }
    assert_eq!(deployment(&stack, &id)["spec"]["replicas"], 1);

    // The simulated kubelet gives Services no cluster IP, so no upstream is
    // recorded here; plant one to see the sleep remove it.
    let mut c = redis::Client::open(stack.redis.url()).unwrap().get_connection().unwrap();
    let key = proto_types::keys::session(&id);
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg(proto_types::record::session::UPSTREAM)
        .arg("10.0.0.1:8080")
        .query(&mut c)
        .unwrap();
    assert_succeeded(&stack, &command(&stack, &id, "sleep"));
    assert_eq!(session(&stack, &id)["session"]["status"], "sleeping");
    assert_eq!(upstream(&stack, &id), None, "a sleeping session has no upstream for the gateway");
    assert_eq!(deployment(&stack, &id)["spec"]["replicas"], 0);
    let pods = stack.kube_get(&format!("/api/v1{NS}/pods?labelSelector=session-uuid%3D{id}")).unwrap().json();
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "no pod while sleeping: {pods}");

    assert_succeeded(&stack, &command(&stack, &id, "wake"));
    assert_eq!(session(&stack, &id)["session"]["status"], "running");
    assert_eq!(deployment(&stack, &id)["spec"]["replicas"], 1);
    assert_eq!(session(&stack, &id)["replicas"], 1);

    let delete = assert_succeeded(&stack, &command(&stack, &id, "delete"));
    let s = session(&stack, &id);
    assert_eq!(s["session"]["status"], "deleted", "{s}");
    let file = s["backup_file"].as_str().expect("the session keeps its backup file name");
    let rest = file.strip_prefix(&format!("app-{id}-")).and_then(|f| f.strip_suffix(".zip")).unwrap_or_default();
    let (stamp, generation) = rest.split_once("-g").unwrap_or_default();
    assert!(
        stamp.len() == 15 && stamp.as_bytes()[8] == b'-' && stamp.replace('-', "").bytes().all(|b| b.is_ascii_digit()),
        "backup file is app-{{uuid}}-{{YYYYmmdd-HHMMSS}}-g{{generation}}.zip: {file}"
    );
    assert!(generation.parse::<u64>().is_ok(), "{file}");
    // Fetch the backup Job by name (a list here would be recorded as a call the worker never makes).
    let generation = delete["generation"].as_u64().expect("jobs report their generation");
    let sid = proto_types::SessionId::parse(&id).unwrap();
    let name = worker::k8s::names::backup_job(&sid, generation);
    let backup = stack.kube_get(&format!("/apis/batch/v1{NS}/jobs/{name}")).unwrap().json();
    assert_eq!(backup["status"]["succeeded"], 1, "the backup Job ran: {backup}");
    for path in [
        format!("/apis/apps/v1{NS}/deployments/ws-{id}"),
        format!("/api/v1{NS}/persistentvolumeclaims/ws-{id}-data"),
        format!("/api/v1{NS}/services/ws-{id}"),
        format!("/apis/networking.k8s.io/v1{NS}/ingresses/ws-{id}"),
        format!("/apis/keda.sh/v1alpha1{NS}/scaledobjects/ws-{id}"),
    ] {
        assert_eq!(stack.kube_get(&path).unwrap().status, 404, "{path} is gone after delete");
    }
}

#[test]
fn two_workers_converge_fifty_interleaved_sessions_to_their_last_request() {
    let stack = Stack::start(StackConfig {
        workers: 2,
        record_calls: Some(calls_file("e2e-fifty").unwrap()),
        ..Default::default()
    })
    .unwrap();

    let created: Vec<(String, String)> = (0..50).map(|i| create(&stack, &format!("user{i}@example.com"))).collect();
    // Interleave commands across sessions without waiting: each session gets
    // a few sleep/wake commands while its create may still be running.
    let mut last = std::collections::HashMap::new();
    let mut seed = 0x2545_f491_u32;
    for round in 0..3 {
        for (id, _) in &created {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let action = if (seed + round).is_multiple_of(2) { "sleep" } else { "wake" };
            command(&stack, id, action);
            last.insert(id.clone(), action);
        }
    }
    for (id, _) in &created {
        let want = if last[id] == "sleep" { ("sleeping", 0) } else { ("running", 1) };
        let reached = wait_until(JOB_TIMEOUT, || {
            let s = session(&stack, id);
            let d = deployment(&stack, id);
            (s["session"]["status"] == want.0 && d["spec"]["replicas"] == want.1 && s["queue_length"] == 0)
                .then_some(())
        });
        assert!(
            reached.is_some(),
            "session {id} should end {want:?}: {} / {}\n{}",
            session(&stack, id),
            deployment(&stack, id)["spec"],
            stack.logs()
        );
    }
    // The default routing is the gateway: no session has an Ingress of its own.
    for (id, _) in &created {
        let path = format!("/apis/networking.k8s.io/v1{NS}/ingresses/ws-{id}");
        assert_eq!(stack.kube_get(&path).unwrap().status, 404, "{path}: no per-session Ingress in gateway mode");
    }
}
