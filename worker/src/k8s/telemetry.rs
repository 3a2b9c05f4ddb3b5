//! A tower layer on the kube client's HTTP stack: one `kube.request` span
//! per Kubernetes API call (info level, `otel.kind = client`, method, path,
//! kube's verb, status) and the `worker_kube_request_duration_seconds`
//! histogram by verb and status. [`client`] builds the production client
//! with it.
//!
//! The span's parent is the caller's current span (kube's `Buffer` carries
//! it to the service), so every call lands under the job that made it.
//! Status 404 is not an error here: `get_opt` and idempotent deletes expect
//! it. Any other 4xx/5xx, or no response at all, marks the span as an error
//! with the reason. Query strings are never recorded (label selectors,
//! field managers are not secrets, but paths are enough).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use sm_telemetry::attrs;
use tower::{Layer, Service};
use tracing::{Instrument as _, Span, field};

use crate::metrics::KubeRequestMetrics;

/// Builds the kube client from the environment (kubeconfig or in-cluster),
/// with [`KubeTelemetryLayer`] around its HTTP stack.
pub async fn client(metrics: KubeRequestMetrics) -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    Ok(kube::client::ClientBuilder::try_from(config)?.with_layer(&KubeTelemetryLayer::new(metrics)).build())
}

/// Wraps a kube HTTP service in [`KubeTelemetry`].
#[derive(Clone, Debug)]
pub struct KubeTelemetryLayer {
    metrics: KubeRequestMetrics,
}

impl KubeTelemetryLayer {
    /// A layer recording latencies into `metrics`.
    pub fn new(metrics: KubeRequestMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for KubeTelemetryLayer {
    type Service = KubeTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KubeTelemetry { inner, metrics: self.metrics.clone() }
    }
}

/// The service [`KubeTelemetryLayer`] produces.
#[derive(Clone, Debug)]
pub struct KubeTelemetry<S> {
    inner: S,
    metrics: KubeRequestMetrics,
}

/// Whether a response status marks the call as failed (404 is an answer).
pub fn is_error_status(status: u16) -> bool {
    status >= 400 && status != 404
}

impl<S, B, RB> Service<Request<B>> for KubeTelemetry<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // kube tags each request with its verb (`get`, `list`, `patch`, `delete`, ...).
        let verb: &'static str = req.extensions().get::<&'static str>().copied().unwrap_or("other");
        let span = tracing::info_span!(
            attrs::KUBE_REQUEST_SPAN,
            { attrs::OTEL_KIND } = "client",
            { attrs::HTTP_REQUEST_METHOD } = %req.method(),
            { attrs::URL_PATH } = req.uri().path(),
            k8s.verb = verb,
            { attrs::HTTP_RESPONSE_STATUS_CODE } = field::Empty,
            { attrs::OTEL_STATUS_CODE } = field::Empty,
            { attrs::OTEL_STATUS_DESCRIPTION } = field::Empty,
        );
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let result = fut.await;
                let span = Span::current();
                let status = match &result {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        span.record(attrs::HTTP_RESPONSE_STATUS_CODE, status);
                        if is_error_status(status) {
                            span.record(attrs::OTEL_STATUS_CODE, "error");
                            span.record(attrs::OTEL_STATUS_DESCRIPTION, format!("HTTP {status}"));
                        }
                        Some(status)
                    }
                    Err(error) => {
                        span.record(attrs::OTEL_STATUS_CODE, "error");
                        span.record(attrs::OTEL_STATUS_DESCRIPTION, error.to_string());
                        None
                    }
                };
                metrics.observe(verb, status, start.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::convert::Infallible;

    use tower::ServiceExt as _;

    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn every_call_is_timed_by_verb_and_status() {
        let metrics = Metrics::new();
        let svc = tower::service_fn(|req: Request<()>| async move {
            let status = if req.uri().path().ends_with("/missing") { 404 } else { 500 };
            Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
        });
        let svc = KubeTelemetryLayer::new(metrics.kube()).layer(svc);
        let mut req = Request::get("/api/v1/namespaces/ws/pods/missing").body(()).unwrap();
        req.extensions_mut().insert("get");
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 404);
        let req = Request::patch("/apis/apps/v1/namespaces/ws/deployments/x").body(()).unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 500);
        let text = metrics.render();
        assert!(text.contains(r#"worker_kube_request_duration_seconds_count{verb="get",status="404"} 1"#), "{text}");
        assert!(text.contains(r#"worker_kube_request_duration_seconds_count{verb="other",status="500"} 1"#), "{text}");
    }

    #[test]
    fn not_found_is_an_answer_not_an_error() {
        assert!(!is_error_status(200));
        assert!(!is_error_status(404));
        assert!(is_error_status(409));
        assert!(is_error_status(500));
    }
}
