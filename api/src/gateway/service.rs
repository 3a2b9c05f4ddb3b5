//! The per-request pipeline. A Host that is no workspace serves the
//! gateway's own endpoints (`/livez`, `/readyz`, `/metrics`) or 404. A
//! workspace request is authenticated ([`authenticate`]), then decided on
//! ([`crate::gateway::decide`]) and acted on: proxied, woken, held until
//! ready, or refused. One span per request (`gateway.request`), none per
//! WebSocket frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use proto_types::{SessionId, SessionState};
use tracing::Instrument as _;

use crate::access::TokenError;
use crate::gateway::activity;
use crate::gateway::config::AuthMode;
use crate::gateway::cookie;
use crate::gateway::decide::{Action, Kind, Seen, decide};
use crate::gateway::metrics::Outcome;
use crate::gateway::pages::{self, Body, STATUS_PATH};
use crate::gateway::proxy::{self, Forwarded, Timeouts};
use crate::gateway::sessions::{SessionView, SessionsError, hex, random};
use crate::gateway::state::Gateway;
use crate::http::net::client_ip;

/// Answers one request.
pub async fn serve_request(gw: Arc<Gateway>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_owned();
    let Some(id) = gw.config.pattern.session_of(&host) else {
        return own_endpoint(&gw, &req).await;
    };
    let span = tracing::info_span!(
        "gateway.request",
        session.id = %id,
        http.method = %req.method(),
        outcome = tracing::field::Empty,
        http.status = tracing::field::Empty,
    );
    let work = async {
        let (outcome, resp) = workspace(&gw, peer, id, host, req).await;
        gw.metrics.request(outcome);
        let span = tracing::Span::current();
        span.record("outcome", outcome.as_str());
        span.record("http.status", resp.status().as_u16());
        resp
    };
    work.instrument(span).await
}

async fn own_endpoint(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let html = pages::wants_html(req.headers());
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/livez") => pages::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => match gw.sessions.ping().await {
            Ok(()) => pages::json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
            Err(_) => pages::unavailable("redis_unavailable", "Redis does not answer.", false, 1),
        },
        (&Method::GET, "/metrics") => pages::text(
            StatusCode::OK,
            gw.metrics.render(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => pages::error(StatusCode::NOT_FOUND, "unknown_workspace", "No workspace is served at this address.", html),
    }
}

/// The request kind for waking.
fn kind(method: &Method, headers: &HeaderMap) -> Kind {
    if proxy::is_upgrade(headers) {
        return Kind::Upgrade;
    }
    let navigate = headers.get("sec-fetch-mode").is_some_and(|v| v == "navigate");
    if *method == Method::GET && (navigate || pages::wants_html(headers)) { Kind::Navigation } else { Kind::Background }
}

/// What authentication concluded.
enum Auth {
    /// Go on.
    Ok,
    /// Answer this (exchange redirect, 401, 404).
    Answer(Outcome, Response<Body>),
}

fn unauthorized(html: bool, message: &str) -> Auth {
    Auth::Answer(Outcome::Unauthorized, pages::error(StatusCode::UNAUTHORIZED, "unauthorized", message, html))
}

fn store_error(e: &SessionsError, html: bool) -> (Outcome, Response<Body>) {
    tracing::warn!(error = %e, "redis unavailable");
    (
        Outcome::StoreError,
        pages::unavailable("store_unavailable", "The session store is unavailable; try again.", html, 2),
    )
}

fn not_found(html: bool) -> (Outcome, Response<Body>) {
    (
        Outcome::NotFound,
        pages::error(StatusCode::NOT_FOUND, "session_not_found", "This workspace does not exist.", html),
    )
}

/// Checks credentials (and, for upgrades, the Origin). `view` is the
/// session as read (cached).
async fn authenticate(
    gw: &Gateway,
    peer: SocketAddr,
    id: &SessionId,
    view: Option<&SessionView>,
    req: &Request<Incoming>,
) -> Result<Auth, SessionsError> {
    let html = pages::wants_html(req.headers());
    let headers = req.headers();
    if proxy::is_upgrade(headers) {
        let own = gw.config.pattern.origin_for(id.as_str());
        if headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) != Some(own.as_str()) {
            return Ok(Auth::Answer(
                Outcome::Unauthorized,
                pages::error(StatusCode::FORBIDDEN, "bad_origin", "WebSocket Origin is not this workspace.", false),
            ));
        }
    }
    match gw.config.auth {
        AuthMode::None => Ok(Auth::Ok),
        AuthMode::Header => {
            let trusted = gw.config.trusted_proxies.iter().any(|c| c.contains(peer.ip()));
            let who = headers.get(gw.config.auth_header.as_str()).and_then(|v| v.to_str().ok()).unwrap_or("");
            if trusted && !who.trim().is_empty() {
                Ok(Auth::Ok)
            } else {
                Ok(unauthorized(html, "Sign in through the workspace login."))
            }
        }
        AuthMode::Token => {
            let Some(keys) = gw.config.keys.as_ref() else { return Ok(unauthorized(html, "No access keys.")) };
            let now = (gw.clock)();
            let (token, target) = cookie::split_token(req.uri().path(), req.uri().query());
            if let Some(token) = token {
                let verified = match keys.verify(&token, id.as_str(), now) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::info!(reason = %e, "access link refused");
                        let msg = if e == TokenError::Expired {
                            "This access link has expired; ask for a new one."
                        } else {
                            "This access link is not valid for this workspace."
                        };
                        return Ok(unauthorized(html, msg));
                    }
                };
                let Some(view) = view.filter(|v| !gone(v)) else {
                    let (o, r) = not_found(html);
                    return Ok(Auth::Answer(o, r));
                };
                if !gw.sessions.claim_nonce(&verified.nonce, verified.expires_ms).await? {
                    return Ok(unauthorized(html, "This access link was already used; ask for a new one."));
                }
                let ttl = gw.config.cookie_ttl;
                let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                let value = cookie::sign(keys, id.as_str(), view.created_at_ms, expires, &hex(&random::<16>()?));
                let line = cookie::set_cookie(&value, ttl.as_secs(), gw.config.pattern.is_https());
                return Ok(Auth::Answer(Outcome::Exchanged, pages::exchange(&target, &line)));
            }
            let value = cookie::find(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()));
            let ok = match (value, view) {
                (Some(value), Some(view)) => cookie::verify(keys, value, id.as_str(), view.created_at_ms, now).is_ok(),
                _ => false,
            };
            if ok { Ok(Auth::Ok) } else { Ok(unauthorized(html, "Open this workspace through its access link.")) }
        }
    }
}

fn gone(v: &SessionView) -> bool {
    matches!(v.status, SessionState::Deleted | SessionState::Deleting)
        || v.desired == proto_types::DesiredState::Deleted
}

fn seen(v: &SessionView) -> Seen {
    Seen { status: v.status, desired: v.desired, has_upstream: v.upstream.is_some() }
}

async fn workspace(
    gw: &Arc<Gateway>,
    peer: SocketAddr,
    id: SessionId,
    host: String,
    req: Request<Incoming>,
) -> (Outcome, Response<Body>) {
    let html = pages::wants_html(req.headers());
    let view = match gw.sessions.get(&id).await {
        Ok(v) => v,
        Err(e) => return store_error(&e, html),
    };
    match authenticate(gw, peer, &id, view.as_ref(), &req).await {
        Ok(Auth::Ok) => {}
        Ok(Auth::Answer(outcome, resp)) => return (outcome, resp),
        Err(e) => return store_error(&e, html),
    }
    if req.uri().path() == STATUS_PATH {
        return status(gw, &id, &host).await;
    }
    let kind = kind(req.method(), req.headers());
    match decide(view.as_ref().map(seen), kind) {
        Action::NotFound => not_found(html),
        Action::Proxy => {
            let upstream = view.and_then(|v| v.upstream).unwrap_or_default();
            forward(gw, peer, &id, host, &upstream, req, Outcome::Proxied).await
        }
        Action::Wake => {
            match gw.sessions.wake(&id).await {
                Ok(Some(job)) => tracing::info!(job.id = %job, "wake enqueued"),
                Ok(None) => {}
                Err(e) => return store_error(&e, html),
            }
            (Outcome::Woke, pages::waking())
        }
        Action::WakingPage => (Outcome::Woke, pages::waking()),
        Action::Asleep => (
            Outcome::Asleep,
            pages::unavailable(
                "workspace_asleep",
                "This workspace is asleep; open it in a browser to wake it.",
                html,
                30,
            ),
        ),
        Action::Hold => {
            let started = Instant::now();
            let holding = Holding::new(gw);
            let ready = wait_ready(gw, &id, &host).await;
            drop(holding);
            gw.metrics.held_for(started.elapsed().as_secs_f64());
            match ready {
                Some(upstream) => forward(gw, peer, &id, host, &upstream, req, Outcome::Held).await,
                None => (
                    Outcome::HoldTimeout,
                    pages::unavailable("wake_timeout", "The workspace is still starting; try again shortly.", html, 5),
                ),
            }
        }
    }
}

/// Counts a held request in `session_gateway_holding`, also when the client
/// gives up and the request's future is dropped.
struct Holding<'a>(&'a Gateway);

impl<'a> Holding<'a> {
    fn new(gw: &'a Gateway) -> Self {
        gw.metrics.holding(1);
        Self(gw)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.metrics.holding(-1);
    }
}

fn timeouts(gw: &Gateway) -> Timeouts {
    Timeouts { connect: gw.config.connect_timeout, read: gw.config.read_timeout }
}

/// `/_sm/status`: what the waking page polls.
async fn status(gw: &Gateway, id: &SessionId, host: &str) -> (Outcome, Response<Body>) {
    match gw.sessions.fresh(id).await {
        Ok(Some(v)) => {
            let ready = match (&v.status, &v.upstream) {
                (SessionState::Running, Some(up)) => proxy::healthy(up, host, timeouts(gw)).await,
                _ => false,
            };
            (Outcome::Status, pages::status(v.status.as_str(), ready))
        }
        Ok(None) => not_found(false),
        Err(e) => store_error(&e, false),
    }
}

/// Waits (bounded by `WAKE_HOLD_TIMEOUT`) until the session runs and its
/// upstream answers `/healthz`; the upstream address, or `None` at the bound.
async fn wait_ready(gw: &Gateway, id: &SessionId, host: &str) -> Option<String> {
    let deadline = tokio::time::Instant::now() + gw.config.wake_hold_timeout;
    // Subscribe before reading, so an event between the two is not missed.
    let mut events = gw.events.subscribe();
    let wait = async {
        loop {
            match gw.sessions.fresh(id).await {
                Ok(Some(v)) if v.status == SessionState::Running && v.upstream.is_some() => {
                    let up = v.upstream.unwrap_or_default();
                    // Running: the last step is the workspace itself answering.
                    loop {
                        if proxy::healthy(&up, host, timeouts(gw)).await {
                            return Some(up);
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
                Ok(Some(v)) if v.desired == proto_types::DesiredState::Running && !gone(&v) => {}
                Ok(_) => return None,
                Err(e) => tracing::warn!(error = %e, "redis unavailable while holding"),
            }
            // Until an event about this session (a lagged receiver re-reads).
            loop {
                match events.recv().await {
                    Ok(e) if e.session_id == *id => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    };
    tokio::time::timeout_at(deadline, wait).await.ok().flatten()
}

async fn forward(
    gw: &Arc<Gateway>,
    peer: SocketAddr,
    id: &SessionId,
    host: String,
    upstream: &str,
    mut req: Request<Incoming>,
    outcome: Outcome,
) -> (Outcome, Response<Body>) {
    let html = pages::wants_html(req.headers());
    let trusted = gw.config.trusted_proxies.iter().any(|c| c.contains(peer.ip()));
    let fwd = Forwarded {
        client: client_ip(peer.ip(), req.headers(), &gw.config.trusted_proxies),
        prior_for: if trusted {
            req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(str::to_owned)
        } else {
            None
        },
        proto: if gw.config.pattern.is_https() { "https" } else { "http" },
        host,
    };
    let counts = activity::counts(req.uri().path());
    let client_upgrade = proxy::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    match proxy::forward(req, upstream, &fwd, timeouts(gw)).await {
        Ok((mut resp, switched)) => {
            if counts && !switched {
                gw.activity.touch(id, (gw.clock)());
            }
            if switched && let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                let gw2 = gw.clone();
                let id2 = id.clone();
                let (guard, stop) = gw.tunnels.open();
                gw.metrics.websockets(1);
                tokio::spawn(
                    async move {
                        let now = || (gw2.clock)();
                        let on_use = |t| gw2.activity.touch(&id2, t);
                        proxy::tunnel(client_upgrade, upstream_upgrade, stop, now, on_use).await;
                        gw2.metrics.websockets(-1);
                        drop(guard);
                    }
                    .instrument(tracing::Span::current()),
                );
            }
            (outcome, proxy::into_body(resp))
        }
        Err(e) => {
            tracing::warn!(error = %e, kind = e.kind(), "upstream error");
            gw.metrics.upstream_error(e.kind());
            gw.sessions.invalidate(id);
            let status = if e.is_timeout() { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
            (
                Outcome::UpstreamError,
                pages::error(status, "upstream_unavailable", "The workspace did not answer; try again shortly.", html),
            )
        }
    }
}
