//! W3C trace-context propagation through the job envelope: the api calls
//! [`current_trace_context`] and stores the strings in `Job::traceparent`
//! / `Job::tracestate`; the worker calls [`set_parent`] on its job span
//! (before entering it) so that span becomes a child of the request span.
//!
//! Only the W3C `traceparent`/`tracestate` format is spoken (no baggage,
//! no B3). Without an OpenTelemetry layer installed (no OTLP endpoint)
//! there is no trace context: [`current_trace_context`] returns
//! `(None, None)` and [`set_parent`] reports [`ParentError::NoLayer`].

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::{OpenTelemetrySpanExt as _, SetParentError};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Why a span could not be attached to a remote parent. The caller
/// usually just logs it at debug level: the span then starts a new trace.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParentError {
    /// No `traceparent` was given (e.g. the api exports no traces).
    #[error("no traceparent")]
    Missing,
    /// The `traceparent` is not a valid W3C header value.
    #[error("invalid traceparent")]
    Invalid,
    /// No OpenTelemetry layer is installed, or the span is disabled by the filter.
    #[error("no OpenTelemetry layer records this span")]
    NoLayer,
    /// The span was already entered (its OpenTelemetry span is started).
    #[error("span already started; set the parent before entering it")]
    AlreadyStarted,
}

/// The W3C `(traceparent, tracestate)` of the current `tracing` span, to be
/// stored in a job. `(None, None)` when there is no sampled-or-not valid
/// trace context (no OpenTelemetry layer, or no current span).
pub fn current_trace_context() -> (Option<String>, Option<String>) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return (None, None);
    }
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let traceparent = carrier.remove(TRACEPARENT);
    let tracestate = carrier.remove(TRACESTATE).filter(|s| !s.is_empty());
    (traceparent, tracestate)
}

/// Makes `span` a child of the remote span described by `traceparent`
/// (and `tracestate`). Call it right after creating the span, before it is
/// entered or instrumented.
pub fn set_parent(
    span: &tracing::Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Result<(), ParentError> {
    let traceparent = traceparent.filter(|t| !t.is_empty()).ok_or(ParentError::Missing)?;
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
    carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate.filter(|s| !s.is_empty()) {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    if !parent.span().span_context().is_valid() {
        return Err(ParentError::Invalid);
    }
    span.set_parent(parent).map_err(|e| match e {
        SetParentError::AlreadyStarted => ParentError::AlreadyStarted,
        _ => ParentError::NoLayer,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Keeps finished spans in memory.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn traced() -> (tracing::Dispatch, Collect) {
        let collect = Collect::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(collect.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        (tracing::Dispatch::new(tracing_subscriber::registry().with(layer)), collect)
    }

    #[test]
    fn remote_child_joins_the_trace_of_the_injecting_span() {
        let (dispatch, collect) = traced();
        tracing::dispatcher::with_default(&dispatch, || {
            let (traceparent, tracestate) = {
                let _request = tracing::info_span!("http.request").entered();
                current_trace_context()
            };
            let traceparent = traceparent.expect("a traced span has a traceparent");
            assert!(traceparent.starts_with("00-") && traceparent.ends_with("-01"), "{traceparent}");
            assert_eq!(tracestate, None);

            // The worker side: a root span in tracing terms, continued from the job.
            let job = tracing::info_span!(parent: None, "job.process");
            set_parent(&job, Some(&traceparent), tracestate.as_deref()).unwrap();
            let _entered = job.enter();
            let (inner, _) = current_trace_context();
            let inner = inner.unwrap();
            assert_eq!(inner[3..35], traceparent[3..35], "same trace id");
            assert_ne!(inner[36..52], traceparent[36..52], "a new span id");
        });
        let spans = collect.0.lock().unwrap().clone();
        let request = spans.iter().find(|s| s.name == "http.request").unwrap();
        let job = spans.iter().find(|s| s.name == "job.process").unwrap();
        assert_eq!(job.span_context.trace_id(), request.span_context.trace_id());
        assert_eq!(job.parent_span_id, request.span_context.span_id());
        assert!(job.parent_span_is_remote);
    }

    #[test]
    fn tracestate_travels_with_the_parent() {
        let (dispatch, _collect) = traced();
        tracing::dispatcher::with_default(&dispatch, || {
            let job = tracing::info_span!("job.process");
            let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            set_parent(&job, Some(parent), Some("vendor=abc")).unwrap();
            let _entered = job.enter();
            let (traceparent, tracestate) = current_trace_context();
            assert!(traceparent.unwrap().contains("0af7651916cd43dd8448eb211c80319c"));
            assert_eq!(tracestate.as_deref(), Some("vendor=abc"));
        });
    }

    #[test]
    fn bad_or_missing_parents_and_late_calls_are_reported() {
        let (dispatch, _collect) = traced();
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("job.process");
            assert_eq!(set_parent(&span, None, None), Err(ParentError::Missing));
            assert_eq!(set_parent(&span, Some("garbage"), None), Err(ParentError::Invalid));
            let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            drop(span.enter());
            assert_eq!(set_parent(&span, Some(parent), None), Err(ParentError::AlreadyStarted));
        });
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_context_to_propagate() {
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry());
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("http.request");
            let _entered = span.enter();
            assert_eq!(current_trace_context(), (None, None));
            let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            assert_eq!(set_parent(&span, Some(parent), None), Err(ParentError::NoLayer));
        });
    }
}
