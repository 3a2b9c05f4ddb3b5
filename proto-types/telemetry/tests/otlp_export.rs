//! End to end: an "api" and a "worker" subscriber (two services, as two
//! processes would have) export over OTLP/HTTP to the in-test receiver;
//! the job span continued from the propagated `traceparent` joins the
//! request's trace, and the Kubernetes call span is its child.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sm_telemetry::{SamplerConfig, TelemetryConfig, attrs, build, current_trace_context, set_parent};
use testkit::otlp::{OtlpReceiver, SpanStatus};

const WAIT: Duration = Duration::from_secs(30);

fn config(service: &str, receiver: &OtlpReceiver) -> TelemetryConfig {
    let mut config = TelemetryConfig::new(service).with_otlp_http(receiver.traces_endpoint());
    config.resource_attributes.insert("deployment.environment".into(), "test".into());
    config.log_filter = "off,otlp_export=info".into();
    config
}

#[test]
fn job_span_in_the_worker_is_a_child_of_the_request_span_in_the_api() {
    let receiver = OtlpReceiver::start().unwrap();
    let (api, api_guard) = build(&config("sm-api", &receiver)).unwrap();
    let (worker, worker_guard) = build(&config("sm-worker", &receiver)).unwrap();

    // The api: a request span, and inside it the context stored in the job.
    let (traceparent, tracestate) = tracing::dispatcher::with_default(&api, || {
        let _request = tracing::info_span!(
            "http.request",
            { attrs::OTEL_KIND } = "server",
            { attrs::HTTP_REQUEST_METHOD } = "POST",
            { attrs::HTTP_ROUTE } = "/sessions/{id}/commands",
        )
        .entered();
        current_trace_context()
    });
    assert!(traceparent.is_some());

    // The worker: a job span continued from the job's context, a failing attempt, and a Kubernetes call.
    tracing::dispatcher::with_default(&worker, || {
        let job = tracing::info_span!(
            "job.process",
            { attrs::OTEL_KIND } = "consumer",
            { attrs::JOB_ID } = "job-1",
            { attrs::SESSION_UUID } = "7f0c6a52-5f5e-4a53-9d0e-0b8a5c1f4e21",
            { attrs::COMMAND } = "create",
            { attrs::ATTEMPT } = 2_u64,
            { attrs::MESSAGING_SYSTEM } = attrs::MESSAGING_SYSTEM_REDIS,
            { attrs::MESSAGING_DESTINATION_NAME } = "{sm}:jobs",
            { attrs::MESSAGING_OPERATION } = "receive",
            { attrs::MESSAGING_MESSAGE_ID } = "1700000000000-0",
            { attrs::MESSAGING_CONSUMER_GROUP_NAME } = "workers",
            { attrs::OTEL_STATUS_CODE } = tracing::field::Empty,
            { attrs::OTEL_STATUS_DESCRIPTION } = tracing::field::Empty,
        );
        set_parent(&job, traceparent.as_deref(), tracestate.as_deref()).unwrap();
        let _job = job.enter();
        tracing::info_span!(
            "kube.request",
            { attrs::OTEL_KIND } = "client",
            { attrs::HTTP_REQUEST_METHOD } = "PATCH",
            { attrs::URL_PATH } = "/apis/apps/v1/namespaces/sessions/statefulsets/ws-1",
            { attrs::HTTP_RESPONSE_STATUS_CODE } = 409_u16,
        )
        .in_scope(|| {});
        job.record(attrs::OTEL_STATUS_CODE, "error");
        job.record(attrs::OTEL_STATUS_DESCRIPTION, "statefulset apply conflicted");
    });

    api_guard.flush().unwrap();
    worker_guard.flush().unwrap();
    let spans = receiver.wait_until(WAIT, |spans| spans.len() >= 3).unwrap();
    let find = |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} in {spans:?}"));
    let (request, job, kube) = (find("http.request"), find("job.process"), find("kube.request"));

    assert_eq!(request.service_name.as_deref(), Some("sm-api"));
    assert_eq!(job.service_name.as_deref(), Some("sm-worker"));
    assert_eq!(request.parent_span_id, None);
    assert_eq!(job.trace_id, request.trace_id);
    assert_eq!(kube.trace_id, request.trace_id);
    assert_eq!(job.parent_span_id.as_deref(), Some(request.span_id.as_str()));
    assert_eq!(kube.parent_span_id.as_deref(), Some(job.span_id.as_str()));

    assert_eq!(request.kind, 2, "server");
    assert_eq!(job.kind, 5, "consumer");
    assert_eq!(kube.kind, 3, "client");
    assert_eq!(job.attr(attrs::JOB_ID), Some("job-1"));
    assert_eq!(job.attr(attrs::SESSION_UUID), Some("7f0c6a52-5f5e-4a53-9d0e-0b8a5c1f4e21"));
    assert_eq!(job.attr(attrs::COMMAND), Some("create"));
    assert_eq!(job.attr(attrs::ATTEMPT), Some("2"));
    assert_eq!(job.attr(attrs::MESSAGING_SYSTEM), Some("redis"));
    assert_eq!(job.attr(attrs::MESSAGING_CONSUMER_GROUP_NAME), Some("workers"));
    assert_eq!(job.status, SpanStatus::Error("statefulset apply conflicted".into()));
    assert_eq!(kube.attr(attrs::HTTP_REQUEST_METHOD), Some("PATCH"));
    assert_eq!(kube.attr(attrs::HTTP_RESPONSE_STATUS_CODE), Some("409"));
    assert_eq!(kube.attr(attrs::URL_PATH), Some("/apis/apps/v1/namespaces/sessions/statefulsets/ws-1"));
}

#[test]
fn always_off_sampling_exports_nothing_and_propagates_an_unsampled_context() {
    let receiver = OtlpReceiver::start().unwrap();
    let mut config = config("sm-api", &receiver);
    config.sampler = SamplerConfig::AlwaysOff;
    let (api, guard) = build(&config).unwrap();
    let traceparent = tracing::dispatcher::with_default(&api, || {
        let _request = tracing::info_span!("http.request").entered();
        current_trace_context().0
    });
    guard.flush().unwrap();
    // flush returns after the exporter got its answer, so nothing in flight can still arrive.
    assert!(receiver.spans().is_empty(), "{:?}", receiver.spans());
    let traceparent = traceparent.unwrap();
    assert!(
        traceparent.ends_with("-00"),
        "the sampled flag is off so the worker does not record either: {traceparent}"
    );
}

#[test]
fn dropping_the_guard_flushes_pending_spans() {
    let receiver = OtlpReceiver::start().unwrap();
    let (api, guard) = build(&config("sm-api", &receiver)).unwrap();
    tracing::dispatcher::with_default(&api, || {
        tracing::info_span!("http.request").in_scope(|| {});
    });
    drop(guard);
    let span = receiver.wait_for_span(WAIT, |s| s.name == "http.request").unwrap();
    assert_eq!(span.attr("deployment.environment"), None, "resource attributes are not span attributes");
}

#[cfg(feature = "grpc")]
#[test]
fn spans_also_travel_over_grpc() {
    let receiver = OtlpReceiver::start().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut config = TelemetryConfig::new("sm-worker").with_otlp_grpc(receiver.endpoint());
    config.log_filter = "off,otlp_export=info".into();
    // The gRPC exporter's connection task lives on the runtime it is built in.
    let (worker, guard) = {
        let _entered = runtime.enter();
        build(&config).unwrap()
    };
    tracing::dispatcher::with_default(&worker, || {
        tracing::info_span!("job.process", { attrs::JOB_ID } = "job-2").in_scope(|| {});
    });
    guard.flush().unwrap();
    let span = receiver.wait_for_span(WAIT, |s| s.name == "job.process").unwrap();
    assert_eq!(span.service_name.as_deref(), Some("sm-worker"));
    assert_eq!(span.attr(attrs::JOB_ID), Some("job-2"));
}
