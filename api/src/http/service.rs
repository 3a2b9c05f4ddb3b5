//! The request pipeline every request goes through, in order: route (404 /
//! 405), API key (checked locally), rate limit (one script call, per IP
//! and per key), body read under the cap and the body timeout (POST and
//! DELETE only), the endpoint, metrics. One `http.request` span per request
//! (`otel.kind = server`, route template, method, status; continued from an
//! incoming W3C `traceparent`; 5xx answers mark it failed with the reason);
//! never logs keys or bodies.
//!
//! A command on an existing session (valid key) also reads that session in
//! the rate limiter's round trip, and the enqueue starts from that read.
//!
//! Probes (`/health`, `/livez`, `/readyz`) skip the key and the rate limit.
//! A 401 is still counted against the client's IP bucket, so guessing keys
//! is rate-limited too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::Request;
use proto_types::SessionId;
use sm_telemetry::attrs;
use tracing::{Instrument, Span, field};

use crate::http::auth::{KeyId, Presented};
use crate::http::error::ApiError;
use crate::http::handlers::{self, Input};
use crate::http::net::client_ip;
use crate::http::ratelimit::{self, apply_headers};
use crate::http::response::HttpResponse;
use crate::http::routes::{self, Matched, RouteId};
use crate::http::state::AppState;
use crate::http::validate;
use crate::metrics::method_label;

/// Answers one request; never fails (every error is a JSON response).
pub async fn serve_request<B>(state: Arc<AppState>, peer: SocketAddr, req: Request<B>) -> HttpResponse
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let method = req.method().clone();
    // A clone of the Uri shares its bytes; the path borrows it while `req` moves on.
    let uri = req.uri().clone();
    let matched = routes::resolve(&method, uri.path());
    let route = routes::label(matched.as_ref());
    let span = tracing::info_span!(
        attrs::HTTP_REQUEST_SPAN,
        { attrs::OTEL_KIND } = "server",
        { attrs::HTTP_REQUEST_METHOD } = method_label(&method),
        { attrs::HTTP_ROUTE } = route,
        { attrs::HTTP_RESPONSE_STATUS_CODE } = field::Empty,
        { attrs::OTEL_STATUS_CODE } = field::Empty,
        { attrs::OTEL_STATUS_DESCRIPTION } = field::Empty,
    );
    let (parent, parent_state) = validate::trace_context(req.headers());
    if parent.is_some() {
        // A malformed or unexported parent just leaves this span a root.
        let _ = sm_telemetry::set_parent(&span, parent.as_deref(), parent_state.as_deref());
    }
    let timeout = state.config.request_timeout;
    let result = async {
        match tokio::time::timeout(timeout, pipeline(&state, peer, matched, req)).await {
            Ok(r) => r,
            Err(_) => error_response(ApiError::Timeout),
        }
    }
    .instrument(span.clone())
    .await;
    let status = result.status().as_u16();
    span.record(attrs::HTTP_RESPONSE_STATUS_CODE, status);
    state.metrics.observe(route, method_label(&method), status, started.elapsed().as_secs_f64());
    result
}

async fn pipeline<B>(
    state: &Arc<AppState>,
    peer: SocketAddr,
    matched: Result<Matched<'_>, ApiError>,
    req: Request<B>,
) -> HttpResponse
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let matched = match matched {
        Ok(m) => m,
        Err(e) => return error_response(e),
    };
    let spec = matched.spec;
    let (parts, body) = req.into_parts();
    let presented = if spec.auth { state.config.keys.authenticate(&parts.headers) } else { Presented::Missing };
    let key: Option<KeyId> = match &presented {
        Presented::Valid(k) => Some(k.clone()),
        _ => None,
    };
    // A command on an existing session from a valid key reads the session in
    // the rate limiter's round trip (the enqueue needs it next).
    let prefetch = match (spec.id, &key, matched.param) {
        (RouteId::Command(_), Some(_), Some(p)) => SessionId::parse(p).ok(),
        _ => None,
    };
    let (verdict, prefetched) = if spec.rate_limited {
        let ip = client_ip(peer.ip(), &parts.headers, &state.config.trusted_proxies);
        match ratelimit::check(state, &ip.to_string(), key.as_ref(), prefetch.as_ref()).await {
            Err(resp) => return resp,
            Ok(v) => v,
        }
    } else {
        (None, None)
    };
    let result = async {
        if spec.auth {
            match presented {
                Presented::Missing => return Err(ApiError::MissingKey),
                Presented::Wrong => return Err(ApiError::WrongKey),
                Presented::Valid(_) => {}
            }
        }
        // Only commands take a body; GET bodies are never read.
        let bytes = if spec.method == "GET" {
            bytes::Bytes::new()
        } else {
            let limit = state.config.body_read_timeout;
            let read = validate::read_body(&parts.headers, body, state.config.max_body_bytes);
            tokio::time::timeout(limit, read).await.map_err(|_| ApiError::BodyTimeout { secs: limit.as_secs() })??
        };
        let input = Input { matched, headers: &parts.headers, query: parts.uri.query(), body: bytes, key, prefetched };
        handlers::handle(state, input).await
    }
    .await;
    let mut resp = result.unwrap_or_else(error_response);
    if let Some(v) = verdict {
        apply_headers(&v, resp.headers_mut());
    }
    resp
}

/// The JSON answer for `e`; a server-side failure (5xx) also marks the
/// current (request) span as failed with the reason.
fn error_response(e: ApiError) -> HttpResponse {
    if e.status().is_server_error() {
        let span = Span::current();
        span.record(attrs::OTEL_STATUS_CODE, "error");
        span.record(attrs::OTEL_STATUS_DESCRIPTION, e.to_string());
    }
    e.into_response()
}
