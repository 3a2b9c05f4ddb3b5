//! Metrics end to end with real processes: scrape the api's `/metrics` and
//! a worker's metrics port before, during and after jobs run, and check the
//! series a dashboard or alert would use move as they should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use testkit::stack::{Stack, StackConfig, wait_until};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// The sum of every series of `name` whose labels contain `fragment`.
fn sum_where(text: &str, name: &str, fragment: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(fragment))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn api_and_worker_series_change_as_jobs_run() {
    // The first Kubernetes call fails (a retry), and workspaces take a
    // moment to become ready (so the job is observably in flight).
    let stack = Stack::start(StackConfig {
        workers: 1,
        standin_env: vec![
            ("STANDIN_FAIL_FIRST".into(), "1".into()),
            ("STANDIN_FAIL_STATUS".into(), "500".into()),
            ("STANDIN_POD_READY_DELAY_MS".into(), "3000".into()),
        ],
        // The injected failure is for the job: no drift repair listing at start.
        worker_env: vec![("RESYNC_INTERVAL".into(), "0".into())],
        ..StackConfig::default()
    })
    .unwrap();

    // Before any job: the series exist (help/type lines) and counters are absent or zero.
    let before = wait_until(SCRAPE_TIMEOUT, || stack.worker_metrics(0).ok())
        .unwrap_or_else(|| panic!("worker metrics never answered\n{}", stack.logs()));
    for series in [
        r#"worker_jobs_started_total{command="create",origin="api"}"#,
        r#"worker_jobs_finished_total{command="create",state="succeeded"}"#,
        r#"worker_jobs_finished_total{command="delete",state="dead"}"#,
        r#"worker_job_retries_total{command="create"}"#,
        "worker_jobs_in_flight",
        "worker_queue_pending_entries",
        "worker_queue_lag_entries",
        "worker_lease_contention_total",
        "worker_entries_reclaimed_total",
    ] {
        assert_eq!(value(&before, series), Some(0.0), "{series} in\n{before}");
    }
    let api_before = stack.api_metrics().unwrap();
    let created = r#"session_api_http_requests_total{route="/session/create",method="POST",status="202"}"#;
    assert_eq!(value(&api_before, created), None, "{api_before}");

    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": "metrics" }))).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json()["job_id"].as_str().unwrap().to_owned();

    // While the workspace becomes ready the job is in flight and its entry pending.
    let seen = wait_until(SCRAPE_TIMEOUT, || {
        let text = stack.worker_metrics(0).ok()?;
        (value(&text, "worker_jobs_in_flight") == Some(1.0)
            && value(&text, "worker_queue_pending_entries") == Some(1.0))
        .then_some(text)
    });
    assert!(seen.is_some(), "job never seen in flight:\n{}", stack.worker_metrics(0).unwrap());

    let done = stack.wait_job(&job, JOB_TIMEOUT).unwrap();
    assert_eq!(done["state"], "succeeded", "{done}\n{}", stack.logs());

    // After: the job is counted once, by command and state, with a duration.
    let after = wait_until(SCRAPE_TIMEOUT, || {
        let text = stack.worker_metrics(0).ok()?;
        // The entry is acknowledged before the task releases the session lease and ends.
        (value(&text, "worker_queue_pending_entries") == Some(0.0)
            && value(&text, "worker_jobs_in_flight") == Some(0.0))
        .then_some(text)
    })
    .unwrap_or_else(|| panic!("job never left flight:\n{}", stack.worker_metrics(0).unwrap()));
    assert_eq!(value(&after, r#"worker_jobs_started_total{command="create",origin="api"}"#), Some(1.0), "{after}");
    assert_eq!(value(&after, r#"worker_jobs_finished_total{command="create",state="succeeded"}"#), Some(1.0));
    assert_eq!(value(&after, r#"worker_job_duration_seconds_count{command="create",state="succeeded"}"#), Some(1.0));
    let seconds = value(&after, r#"worker_job_duration_seconds_sum{command="create",state="succeeded"}"#).unwrap();
    assert!(seconds > 0.0, "{seconds}");
    assert_eq!(value(&after, r#"worker_job_retries_total{command="create"}"#), Some(1.0), "{after}");
    assert_eq!(value(&after, "worker_queue_lag_entries"), Some(0.0));
    assert_eq!(value(&after, "worker_queue_consumers"), Some(1.0));
    // Kubernetes latency by verb and status: the injected 500, the reads, the creates (POST).
    let kube = "worker_kube_request_duration_seconds_count";
    assert_eq!(sum_where(&after, kube, r#"status="500""#), 1.0, "{after}");
    assert!(sum_where(&after, kube, r#"verb="get",status="404""#) >= 4.0, "nothing existed yet: {after}");
    assert!(sum_where(&after, kube, r#"verb="create",status="201""#) >= 4.0, "the creates: {after}");
    assert!(!after.contains(&job), "no job ids in labels");

    // The api counted the request by route template, and no session id leaked into labels.
    let api_after = stack.api_metrics().unwrap();
    assert_eq!(value(&api_after, created), Some(1.0), "{api_after}");
    let latency =
        r#"session_api_http_request_duration_seconds_count{route="/session/create",method="POST",status="202"}"#;
    assert_eq!(value(&api_after, latency), Some(1.0), "{api_after}");
    assert!(api_after.contains(r#"route="/jobs/{job_id}""#), "polled /jobs counted by template: {api_after}");
    assert!(!api_after.contains(&job), "no job ids in labels");
}
