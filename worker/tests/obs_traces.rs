//! Traces end to end with real processes: an in-test OTLP receiver
//! collects the spans the api and a worker export while a session is
//! created against redis-server and the stand-in cluster. One trace must
//! link the api's request span, the worker's job span(s) and the
//! Kubernetes call spans, with the documented attributes; retries and
//! redeliveries must each be visible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use testkit::otlp::{CollectedSpan, OtlpReceiver, SpanStatus};
use testkit::stack::{Stack, StackConfig};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);
const SPAN_TIMEOUT: Duration = Duration::from_secs(60);
/// OTLP span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const CONSUMER: i32 = 5;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Exports quickly to `receiver` (plus `extra`).
fn traced(receiver: &OtlpReceiver, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let endpoint = receiver.traces_endpoint();
    let mut v = env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    v.extend(env(extra));
    v
}

fn create(stack: &Stack) -> (String, String) {
    let r = stack.api("POST", "/session/create", Some(&json!({ "user_id": "tracer" }))).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    (v["uuid"].as_str().unwrap().to_owned(), v["job_id"].as_str().unwrap().to_owned())
}

/// Spans by id, to walk parents.
fn by_id(spans: &[CollectedSpan]) -> HashMap<&str, &CollectedSpan> {
    spans.iter().map(|s| (s.span_id.as_str(), s)).collect()
}

/// Whether `span` has `ancestor` somewhere up its parent chain.
fn descends_from(spans: &[CollectedSpan], span: &CollectedSpan, ancestor: &str) -> bool {
    let ids = by_id(spans);
    let mut parent = span.parent_span_id.as_deref();
    while let Some(p) = parent {
        if p == ancestor {
            return true;
        }
        parent = ids.get(p).and_then(|s| s.parent_span_id.as_deref());
    }
    false
}

fn job_spans<'a>(spans: &'a [CollectedSpan], job_id: &str) -> Vec<&'a CollectedSpan> {
    spans.iter().filter(|s| s.name == "job.process" && s.attr("job.id") == Some(job_id)).collect()
}

fn request_span<'a>(spans: &'a [CollectedSpan], trace_id: &str) -> Option<&'a CollectedSpan> {
    spans
        .iter()
        .find(|s| s.name == "http.request" && s.trace_id == trace_id && s.attr("http.route") == Some("/session/create"))
}

fn is_error(s: &CollectedSpan) -> bool {
    matches!(s.status, SpanStatus::Error(_))
}

/// Waits until the job's (finished) job spans number `deliveries`, and the
/// api's request span of the same trace arrived.
fn wait_for_trace(receiver: &OtlpReceiver, job_id: &str, deliveries: usize) -> Vec<CollectedSpan> {
    receiver
        .wait_until(SPAN_TIMEOUT, |spans| {
            let jobs = job_spans(spans, job_id);
            jobs.len() >= deliveries
                && jobs.iter().any(|j| j.attr("job.state") == Some("succeeded"))
                && request_span(spans, &jobs[0].trace_id).is_some()
        })
        .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_job_attributes(job: &CollectedSpan, job_id: &str, session: &str, attempt: &str) {
    assert_eq!(job.service_name.as_deref(), Some("sm-worker"));
    assert_eq!(job.kind, CONSUMER, "{job:?}");
    for (key, want) in [
        ("job.id", job_id),
        ("session.uuid", session),
        ("command", "create"),
        ("attempt", attempt),
        ("messaging.system", "redis"),
        ("messaging.destination.name", "{sm}:jobs"),
        ("messaging.operation", "receive"),
        ("messaging.consumer.group.name", "workers"),
    ] {
        assert_eq!(job.attr(key), Some(want), "attribute {key} of {job:?}");
    }
    let entry = job.attr("messaging.message.id").expect("stream entry id");
    assert!(entry.contains('-'), "entry id {entry}");
}

#[test]
fn one_trace_links_the_request_the_job_and_its_kubernetes_calls_and_shows_retries() {
    let receiver = OtlpReceiver::start().unwrap();
    // The first Kubernetes request fails with 500: the first converge try
    // fails and is retried within the same delivery.
    let stack = Stack::start(StackConfig {
        workers: 1,
        api_env: traced(&receiver, &[]),
        // The injected failure is for the job: no drift repair listing at start.
        worker_env: traced(&receiver, &[("RESYNC_INTERVAL", "0")]),
        standin_env: env(&[("STANDIN_FAIL_FIRST", "1"), ("STANDIN_FAIL_STATUS", "500")]),
        ..StackConfig::default()
    })
    .unwrap();
    let (session, job_id) = create(&stack);
    let job = stack.wait_job(&job_id, JOB_TIMEOUT).unwrap();
    assert_eq!(job["state"], "succeeded", "{job}\n{}", stack.logs());

    let spans = wait_for_trace(&receiver, &job_id, 1);
    let jobs = job_spans(&spans, &job_id);
    assert_eq!(jobs.len(), 1, "one delivery: {jobs:?}");
    let job = jobs[0];
    let trace = job.trace_id.as_str();
    assert_job_attributes(job, &job_id, &session, "1");
    assert!(!is_error(job), "{job:?}");

    // The api's request span is the root, and the job span descends from it.
    let request = request_span(&spans, trace).unwrap();
    assert_eq!(request.service_name.as_deref(), Some("sm-api"));
    assert_eq!(request.kind, SERVER);
    assert_eq!(request.parent_span_id, None, "the request starts the trace");
    assert_eq!(request.attr("http.request.method"), Some("POST"));
    assert_eq!(request.attr("http.response.status_code"), Some("202"));
    assert!(descends_from(&spans, job, &request.span_id), "job span under the request span: {job:?}");

    // Each converge try is its own span: the first failed, the retry succeeded.
    let mut tries: Vec<&CollectedSpan> = spans
        .iter()
        .filter(|s| s.name == "job.converge" && s.parent_span_id.as_deref() == Some(&job.span_id))
        .collect();
    tries.sort_by_key(|s| s.attr("try").map(str::to_owned));
    assert!(tries.len() >= 2, "a retry: {tries:?}");
    assert_eq!(tries[0].attr("try"), Some("1"));
    assert!(is_error(tries[0]), "first try failed: {:?}", tries[0]);
    let last = tries.last().unwrap();
    assert!(!is_error(last), "last try succeeded: {last:?}");

    // Kubernetes calls: client spans inside the job, with method, path and status.
    let kube: Vec<&CollectedSpan> = spans.iter().filter(|s| s.name == "kube.request" && s.trace_id == trace).collect();
    assert!(kube.len() >= 5, "observe + create calls: {kube:?}");
    for k in &kube {
        assert_eq!(k.kind, CLIENT, "{k:?}");
        assert_eq!(k.service_name.as_deref(), Some("sm-worker"));
        assert!(descends_from(&spans, k, &job.span_id), "kube span under the job span: {k:?}");
        assert!(k.attr("url.path").is_some_and(|p| p.starts_with("/api")), "{k:?}");
        assert!(!k.attr("url.path").unwrap().contains('?'), "no query strings: {k:?}");
    }
    // A fresh session's objects are created (POST), never applied (fencing, worker/README.md).
    let applied = kube.iter().find(|k| k.attr("http.request.method") == Some("POST")).expect("a create");
    assert!(applied.attr("url.path").unwrap().contains("/namespaces/workspaces/"), "{applied:?}");
    assert!(matches!(applied.attr("http.response.status_code"), Some("200" | "201")), "{applied:?}");
    // The injected failure: a 500 that marks its span (and its try) as failed.
    let failed = kube.iter().find(|k| k.attr("http.response.status_code") == Some("500")).expect("the injected 500");
    assert!(matches!(&failed.status, SpanStatus::Error(m) if m.contains("500")), "{failed:?}");
    assert!(descends_from(&spans, failed, &tries[0].span_id), "the 500 belongs to the first try");
}

#[test]
fn a_redelivered_job_shows_each_delivery_attempt_in_the_same_trace() {
    let receiver = OtlpReceiver::start().unwrap();
    // No retries within a delivery: the injected failure leaves the entry
    // pending, and the reclaimer redelivers it once idle for the lease.
    let stack = Stack::start(StackConfig {
        workers: 1,
        api_env: traced(&receiver, &[]),
        worker_env: traced(
            &receiver,
            &[("WORKER_MAX_RETRIES", "0"), ("WORKER_LEASE_MS", "1000"), ("RESYNC_INTERVAL", "0")],
        ),
        standin_env: env(&[("STANDIN_FAIL_FIRST", "1"), ("STANDIN_FAIL_STATUS", "500")]),
        ..StackConfig::default()
    })
    .unwrap();
    let (session, job_id) = create(&stack);
    let job = stack.wait_job(&job_id, JOB_TIMEOUT).unwrap();
    assert_eq!(job["state"], "succeeded", "{job}\n{}", stack.logs());

    let spans = wait_for_trace(&receiver, &job_id, 2);
    let mut jobs = job_spans(&spans, &job_id);
    jobs.sort_by_key(|j| j.attr("attempt").map(str::to_owned));
    assert_eq!(jobs.len(), 2, "two deliveries: {jobs:?}");
    let (first, second) = (jobs[0], jobs[1]);
    assert_job_attributes(first, &job_id, &session, "1");
    assert_job_attributes(second, &job_id, &session, "2");
    assert_eq!(first.trace_id, second.trace_id, "both deliveries continue the request's trace");
    assert_eq!(first.attr("messaging.message.id"), second.attr("messaging.message.id"), "same stream entry");
    assert_eq!(first.attr("messaging.delivery_count"), Some("1"));
    assert_eq!(second.attr("messaging.delivery_count"), Some("2"));
    // The failed delivery carries the reason; the redelivery finished the job.
    assert!(matches!(&first.status, SpanStatus::Error(m) if m.contains("500")), "{first:?}");
    assert_eq!(first.attr("job.state"), None, "the first delivery did not finish the job");
    assert!(!is_error(second), "{second:?}");
    assert_eq!(second.attr("job.state"), Some("succeeded"));

    let request = request_span(&spans, &first.trace_id).unwrap();
    for j in [first, second] {
        assert!(descends_from(&spans, j, &request.span_id), "{j:?} under {request:?}");
        let calls = spans.iter().filter(|s| s.name == "kube.request" && descends_from(&spans, s, &j.span_id)).count();
        assert!(calls > 0, "each delivery has its own Kubernetes calls: {j:?}");
    }
}
