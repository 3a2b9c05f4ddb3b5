//! A worker that lost its session lease never touches the cluster again
//! (issue 12), with real processes: redis-server, the stand-in cluster, the
//! api and two workers. Worker W1 is frozen with SIGSTOP in the middle of a
//! job (waiting for readiness, which the stand-in delays by 4 s), W2 takes
//! over after W1's 2 s lease expired and runs a newer command, then W1 is
//! resumed with SIGCONT. W1 must stop before its next write (the
//! entitlement deadline passed, and the objects carry W2's newer fence),
//! so the cluster stays as W2 left it.
//!
//! On the code before the fence, W1 re-planned with its stale desired state
//! and scaled the workspace up again (or recreated a deleted session's
//! objects): these tests failed there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use testkit::stack::{Stack, StackConfig, calls_file, wait_until};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);
const NS: &str = "/namespaces/workspaces";
/// Longer than W1's lease (`WORKER_LEASE_MS`).
const LEASE_EXPIRED: Duration = Duration::from_secs(3);

fn stack(calls: &str) -> Stack {
    let env = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    Stack::start(StackConfig {
        workers: 1,
        record_calls: Some(calls_file(calls).unwrap()),
        worker_env: vec![env("WORKER_LEASE_MS", "2000"), env("WORKER_RECLAIM_INTERVAL_MS", "500")],
        standin_env: vec![env("STANDIN_POD_READY_DELAY_MS", "4000")],
        ..Default::default()
    })
    .unwrap()
}

fn signal(stack: &mut Stack, n: usize, sig: &str) {
    let pid = stack.workers_mut()[n].id().expect("worker running");
    let ok = std::process::Command::new("kill").arg(sig).arg(pid.to_string()).status().unwrap().success();
    assert!(ok, "kill {sig} {pid}");
}

fn command(stack: &Stack, id: &str, action: &str) -> String {
    let r = if action == "delete" {
        stack.api("DELETE", &format!("/session/{id}"), None).unwrap()
    } else {
        stack.api("POST", &format!("/session/{id}/{action}"), None).unwrap()
    };
    assert_eq!(r.status, 202, "{action} {id}: {}", r.text());
    r.json()["job_id"].as_str().unwrap().to_owned()
}

fn create(stack: &Stack) -> (String, String) {
    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": "fence@example.com" }))).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    (v["uuid"].as_str().unwrap().to_owned(), v["job_id"].as_str().unwrap().to_owned())
}

fn succeeded(stack: &Stack, job: &str) {
    let v = stack.wait_job(job, JOB_TIMEOUT).unwrap();
    assert_eq!(v["state"], "succeeded", "job {job}: {v}\n{}", stack.logs());
}

fn status(stack: &Stack, id: &str) -> Value {
    stack.api("GET", &format!("/session/{id}"), None).unwrap().json()["session"]["status"].clone()
}

fn deployment(stack: &Stack, id: &str) -> Option<Value> {
    let r = stack.kube_get(&format!("/apis/apps/v1{NS}/deployments/ws-{id}")).unwrap();
    (r.status == 200).then(|| r.json())
}

/// Workspace pods of the session (a finished backup Job's pod stays, as in a cluster, until
/// the Job's TTL removes it).
fn pods(stack: &Stack, id: &str) -> usize {
    let selector = format!("session-uuid%3D{id}%2Capp.kubernetes.io%2Fcomponent%3Dworkspace");
    let v = stack.kube_get(&format!("/api/v1{NS}/pods?labelSelector={selector}")).unwrap().json();
    v["items"].as_array().map_or(0, Vec::len)
}

fn objects(id: &str) -> [String; 5] {
    [
        format!("/api/v1{NS}/persistentvolumeclaims/ws-{id}-data"),
        format!("/apis/apps/v1{NS}/deployments/ws-{id}"),
        format!("/api/v1{NS}/services/ws-{id}"),
        format!("/apis/networking.k8s.io/v1{NS}/ingresses/ws-{id}"),
        format!("/apis/keda.sh/v1alpha1{NS}/scaledobjects/ws-{id}"),
    ]
}

fn existing(stack: &Stack, id: &str) -> Vec<String> {
    objects(id).into_iter().filter(|p| stack.kube_get(p).unwrap().status != 404).collect()
}

/// Whether W1 (worker 0) reported a fenced job.
fn w1_fenced(stack: &Stack) -> bool {
    stack
        .worker_metrics(0)
        .is_ok_and(|m| m.lines().any(|l| l.contains(r#"jobs_abandoned_total{outcome="fenced"}"#) && !l.ends_with(" 0")))
}

/// Freezes W1 once `mid_job` holds, lets W2 take over after W1's lease
/// expired and run `newer`, then resumes W1 and waits until it either
/// reported a fenced job or `undone` shows it acted anyway.
fn pause_w1_while_w2_runs(
    stack: &mut Stack,
    mid_job: impl Fn(&Stack) -> bool,
    newer: impl FnOnce(&Stack) -> String,
    undone: impl Fn(&Stack) -> bool,
) {
    assert!(wait_until(JOB_TIMEOUT, || mid_job(stack).then_some(())).is_some(), "W1 mid-job\n{}", stack.logs());
    signal(stack, 0, "-STOP");
    stack.add_worker().unwrap();
    std::thread::sleep(LEASE_EXPIRED);
    let job = newer(stack);
    succeeded(stack, &job);
    signal(stack, 0, "-CONT");
    let settled = wait_until(JOB_TIMEOUT, || (w1_fenced(stack) || undone(stack)).then_some(()));
    assert!(settled.is_some(), "W1 neither fenced nor acted\n{}", stack.logs());
}

#[test]
fn regression_a_paused_worker_resumed_after_its_lease_does_not_wake_a_slept_session() {
    let mut stack = stack("e2e-fencing-wake");
    let (id, job) = create(&stack);
    succeeded(&stack, &job);
    succeeded(&stack, &command(&stack, &id, "sleep"));
    assert_eq!(status(&stack, &id), "sleeping");

    command(&stack, &id, "wake");
    let scaled_up = |s: &Stack| deployment(s, &id).is_some_and(|d| d["spec"]["replicas"] == 1);
    pause_w1_while_w2_runs(&mut stack, scaled_up, |s| command(s, &id, "sleep"), scaled_up);

    let d = deployment(&stack, &id).expect("the Deployment stays");
    assert_eq!(d["spec"]["replicas"], 0, "W1 scaled the slept workspace up again: {d}\n{}", stack.logs());
    assert_eq!(pods(&stack, &id), 0, "no pod after W1 resumed");
    assert_eq!(status(&stack, &id), "sleeping");
    assert!(w1_fenced(&stack), "W1 reports the fenced job\n{}", stack.logs());
}

#[test]
fn regression_a_paused_worker_does_not_recreate_a_session_deleted_meanwhile() {
    for mid in ["create", "wake"] {
        let mut stack = stack(&format!("e2e-fencing-delete-mid-{mid}"));
        let (id, job) = create(&stack);
        if mid == "wake" {
            succeeded(&stack, &job);
            succeeded(&stack, &command(&stack, &id, "sleep"));
            command(&stack, &id, "wake");
        }
        let mid_job = |s: &Stack| deployment(s, &id).is_some_and(|d| d["spec"]["replicas"] == 1);
        let recreated = |s: &Stack| !existing(s, &id).is_empty();
        pause_w1_while_w2_runs(&mut stack, mid_job, |s| command(s, &id, "delete"), recreated);

        assert_eq!(existing(&stack, &id), Vec::<String>::new(), "mid-{mid}: objects left\n{}", stack.logs());
        assert_eq!(pods(&stack, &id), 0);
        assert_eq!(status(&stack, &id), "deleted");
        assert!(w1_fenced(&stack), "mid-{mid}: W1 reports the fenced job\n{}", stack.logs());
    }
}
