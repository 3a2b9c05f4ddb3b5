//! Forwarding one request to a workspace: a fresh HTTP/1.1 connection per
//! request (no idle keep-alive pool, so nothing lingers towards a workspace
//! that goes to sleep), connect and response-head timeouts, hop-by-hop
//! headers removed both ways, `X-Forwarded-For/Proto/Host` set, the
//! gateway's own cookie kept from the workspace, bodies streamed both ways.
//!
//! A WebSocket upgrade is forwarded as a request; when the workspace
//! answers 101, [`tunnel`] joins the two upgraded connections and copies
//! bytes both ways, counting client-to-server traffic that is use
//! ([`crate::gateway::wsframes`]).

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::cookie::COOKIE_NAME;
use crate::gateway::pages::Body;
use crate::gateway::shutdown::stopped;
use crate::gateway::wsframes::{FrameScanner, UseMeter};

/// Why a workspace could not be reached. Every kind answers 502 (504 for
/// timeouts) and is counted by [`ProxyError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Connection refused or unreachable.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The upstream.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No connection within the connect timeout.
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    /// The HTTP exchange failed (reset, closed, bad response).
    #[error("upstream exchange failed: {0}")]
    Exchange(#[from] hyper::Error),
    /// No response head within the read timeout.
    #[error("upstream response timed out")]
    ReadTimeout,
}

impl ProxyError {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect { .. } => "refused",
            ProxyError::ConnectTimeout(_) => "connect_timeout",
            ProxyError::Exchange(_) => "reset",
            ProxyError::ReadTimeout => "read_timeout",
        }
    }

    /// Whether the gateway should answer 504 rather than 502.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ProxyError::ConnectTimeout(_) | ProxyError::ReadTimeout)
    }
}

/// The timeouts towards workspaces.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// From request sent to response head.
    pub read: Duration,
}

/// What the `X-Forwarded-*` headers say.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The client's address.
    pub client: IpAddr,
    /// `X-Forwarded-For` as received, when the peer is a trusted proxy.
    pub prior_for: Option<String>,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The Host the client asked for.
    pub host: String,
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (those named by `Connection` too). An
/// upgrade keeps `Connection: upgrade` and `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if upgrade && let Some(u) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, u);
    }
}

/// Drops the gateway's cookie from `Cookie`, so a workspace never sees it.
fn strip_own_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split('=').next() != Some(COOKIE_NAME))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

fn set_forwarded(headers: &mut HeaderMap, fwd: &Forwarded) {
    let xff = match &fwd.prior_for {
        Some(prior) => format!("{prior}, {}", fwd.client),
        None => fwd.client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(fwd.proto));
    if let Ok(v) = HeaderValue::from_str(&fwd.host) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
}

/// Whether a request asks for a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Sends `req` to `addr` and returns the workspace's response, streaming.
/// For an upgrade, the returned response is the 101 and `on_upgrade` is
/// the workspace side of the tunnel.
pub async fn forward(
    mut req: Request<Incoming>,
    addr: &str,
    fwd: &Forwarded,
    timeouts: Timeouts,
) -> Result<(Response<Incoming>, bool), ProxyError> {
    let upgrade = is_upgrade(req.headers());
    let stream = match tokio::time::timeout(timeouts.connect, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(ProxyError::Connect { addr: addr.to_owned(), source }),
        Err(_) => return Err(ProxyError::ConnectTimeout(addr.to_owned())),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(stream)).await?;
    // The connection task ends when the exchange does (the sender is
    // dropped with this function's future and the body is read to its end)
    // or, for an upgrade, when the tunnel takes the socket over.
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    strip_own_cookie(headers);
    set_forwarded(headers, fwd);
    // Origin-form towards the workspace.
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Ok(uri) = pq.parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_11;
    let mut resp = match tokio::time::timeout(timeouts.read, sender.send_request(req)).await {
        Ok(r) => r?,
        Err(_) => return Err(ProxyError::ReadTimeout),
    };
    let switched = upgrade && resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(resp.headers_mut(), switched);
    Ok((resp, switched))
}

/// The streamed workspace response as the gateway's body type.
pub fn into_body(resp: Response<Incoming>) -> Response<Body> {
    resp.map(|b| b.boxed_unsync())
}

/// Copies bytes both ways between the client and the workspace until
/// either side closes or `stop` fires; calls `on_use(now)` for each read of
/// the client that carried use ([`UseMeter`], on the clock `now`).
pub async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut stop: tokio::sync::watch::Receiver<bool>,
    now: impl Fn() -> u64,
    on_use: impl Fn(u64),
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return;
        }
    };
    let (mut cr, mut cw) = tokio::io::split(TokioIo::new(client));
    let (mut ur, mut uw) = tokio::io::split(TokioIo::new(upstream));
    let up = async {
        let mut scanner = FrameScanner::default();
        let mut meter = UseMeter::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                uw.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            let seen = scanner.feed(&buf[..n]);
            if seen.data > 0 {
                let t = now();
                if meter.observe(t, seen) {
                    on_use(t);
                }
            }
            uw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut ur, &mut cw).await?;
        cw.shutdown().await
    };
    tokio::select! {
        r = up => if let Err(e) = r { tracing::debug!(error = %e, "websocket client side ended"); },
        r = down => if let Err(e) = r { tracing::debug!(error = %e, "websocket workspace side ended"); },
        () = stopped(&mut stop) => tracing::debug!("websocket closed at the end of the shutdown grace"),
    }
}

/// Whether the workspace at `addr` answers `GET /healthz` with a 2xx.
pub async fn healthy(addr: &str, host: &str, timeouts: Timeouts) -> bool {
    let check = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(stream))
                .await
                .ok()?;
        let drive = async move {
            let _ = conn.await;
        };
        let req = Request::get("/healthz").header(header::HOST, host).body(http_body_util::Empty::new()).ok()?;
        let ask = async move { sender.send_request(req).await.ok().map(|r| r.status().is_success()) };
        tokio::select! {
            ok = ask => ok,
            () = drive => None,
        }
    };
    tokio::time::timeout(timeouts.connect + timeouts.read.min(Duration::from_secs(5)), check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_theirs() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-end-to-end", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-end-to-end"));
        let mut u = HeaderMap::new();
        u.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        u.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut u, true);
        assert_eq!(u.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(u.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn the_gateway_cookie_never_reaches_the_workspace() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; sm_session=secret; b=2"));
        strip_own_cookie(&mut h);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("sm_session=secret"));
        strip_own_cookie(&mut only);
        assert!(!only.contains_key(header::COOKIE));
    }
}
