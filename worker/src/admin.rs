//! The worker's small HTTP server for probes and metrics: `/livez` (the
//! process runs), `/readyz` (the runner has joined the consumer group and
//! Redis answered), `/metrics` (Prometheus text from a render function).
//!
//! It is not an API: no auth, no bodies, GET only; anything else is 404/405.
//! The metrics text comes from an async render function, so a scrape may
//! read Redis (the queue backlog) before answering.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A boxed future of the metrics text.
pub type RenderFuture = Pin<Box<dyn Future<Output = String> + Send>>;

/// Renders the Prometheus text exposition.
pub type MetricsRender = Arc<dyn Fn() -> RenderFuture + Send + Sync>;

/// A [`MetricsRender`] returning the text of a synchronous function.
pub fn render_sync(f: impl Fn() -> String + Send + Sync + 'static) -> MetricsRender {
    Arc::new(move || {
        let text = f();
        Box::pin(async move { text })
    })
}

/// Shared state of the admin server.
#[derive(Clone)]
pub struct Admin {
    ready: Arc<AtomicBool>,
    metrics: MetricsRender,
}

impl Admin {
    /// A server answering `/metrics` with `metrics()`; not ready until [`Admin::set_ready`].
    pub fn new(metrics: MetricsRender) -> Self {
        Self { ready: Arc::new(AtomicBool::new(false)), metrics }
    }

    /// Marks the worker ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Answers one request.
    pub async fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String, ctype: &'static str| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
            r
        };
        let plain = "text/plain; charset=utf-8";
        if !matches!(path, "/livez" | "/readyz" | "/metrics") {
            return text(StatusCode::NOT_FOUND, "not found\n".into(), plain);
        }
        if method != Method::GET && method != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into(), plain);
            r.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match path {
            "/livez" => text(StatusCode::OK, "ok\n".into(), plain),
            "/readyz" if self.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ready\n".into(), plain),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into(), plain),
            _ => text(StatusCode::OK, (self.metrics)().await, "text/plain; version=0.0.4; charset=utf-8"),
        }
    }

    /// Serves on `listener` until `shutdown` turns true.
    pub async fn serve(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let admin = self.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.respond(req.method(), req.uri().path()).await) }
            });
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }
}

/// Binds the admin address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_and_metrics() {
        let admin = Admin::new(render_sync(|| "worker_up 1\n".to_owned()));
        assert_eq!(admin.respond(&Method::GET, "/livez").await.status(), StatusCode::OK);
        assert_eq!(admin.respond(&Method::GET, "/readyz").await.status(), StatusCode::SERVICE_UNAVAILABLE);
        admin.set_ready(true);
        assert_eq!(admin.respond(&Method::GET, "/readyz").await.status(), StatusCode::OK);
        let metrics = admin.respond(&Method::GET, "/metrics").await;
        assert_eq!(metrics.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(metrics.into_body()).await.unwrap().to_bytes();
        assert_eq!(&body[..], b"worker_up 1\n");
        assert_eq!(admin.respond(&Method::POST, "/metrics").await.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(admin.respond(&Method::GET, "/nope").await.status(), StatusCode::NOT_FOUND);
    }
}
