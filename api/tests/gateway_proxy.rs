//! The gateway against a real redis-server and a test workspace (HTTP
//! echo, a streamed response, a health check and a WebSocket byte echo).
//! Sessions are written into Redis directly; the worker's finish is
//! simulated by writing the session's status and upstream and an event on
//! the events stream. Time that matters (token and cookie expiry, activity
//! stamps) comes from a clock the test sets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use api::access::Keys;
use api::gateway::{Clock, GatewayArgs};
use bytes::Bytes;
use clap::Parser as _;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use proto_types::{Command, Event, Job, JobId, JobState, Origin, SessionId, SessionState, keys};
use redis::AsyncCommands;
use testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const KEY_A: &str = "a:0123456789abcdef0123456789abcdef";
const KEY_B: &str = "b:fedcba9876543210fedcba9876543210";
const NONCE: &str = "00112233445566778899aabbccddeeff";
const SUFFIX: &str = ".ws.test";
const T0: u64 = 1_800_000_000_000;

// ---------------------------------------------------------------- upstream

/// The test workspace.
struct Upstream {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    /// Chunks of the next `/stream` response.
    stream_tx: Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Bytes>>>>,
    _stop: oneshot::Sender<()>,
}

async fn upstream_handle(
    req: Request<Incoming>,
    healthy: Arc<AtomicBool>,
    stream_rx: Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Bytes>>>>,
) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    let full = |s: StatusCode, b: String| {
        let mut r = Response::new(Full::new(Bytes::from(b)).boxed_unsync());
        *r.status_mut() = s;
        r
    };
    match req.uri().path() {
        "/healthz" => {
            if healthy.load(Ordering::SeqCst) {
                full(StatusCode::OK, r#"{"status":"alive"}"#.into())
            } else {
                full(StatusCode::SERVICE_UNAVAILABLE, String::new())
            }
        }
        "/ws" => {
            let mut req = req;
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r
        }
        "/stream" => {
            let rx = stream_rx.lock().await.take().expect("a stream was prepared");
            let mut r = Response::new(ChanBody(rx).boxed_unsync());
            r.headers_mut().insert("x-upstream-hop", "1".parse().unwrap());
            r.headers_mut().insert("connection", "x-upstream-hop".parse().unwrap());
            r
        }
        _ => {
            let headers: HashMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let uri = req.uri().to_string();
            let method = req.method().to_string();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let out = serde_json::json!({
                "uri": uri,
                "method": method,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            full(StatusCode::OK, out.to_string())
        }
    }
}

/// A response body fed chunk by chunk from a channel.
struct ChanBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let stream_tx = Arc::new(tokio::sync::Mutex::new(None));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (h, s) = (healthy.clone(), stream_tx.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = &mut stopped => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (h, s) = (h.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (h, s) = (h.clone(), s.clone());
                        async move { Ok::<_, Infallible>(upstream_handle(req, h, s).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, healthy, stream_tx, _stop: stop }
    }
}

// ---------------------------------------------------------------- gateway

/// A running gateway on port 0 with a test clock.
struct Gw {
    addr: SocketAddr,
    now: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    async fn start(redis: &RedisServer, extra: &[&str]) -> Self {
        let url = redis.url();
        let mut argv = vec![
            "gateway",
            "--redis-url",
            &url,
            "--workspace-url-pattern",
            "http://{uuid}.ws.test",
            "--activity-flush-ms",
            "20",
            "--session-cache-ms",
            "0",
        ];
        if !extra.contains(&"--access-keys") {
            argv.extend_from_slice(&["--access-keys", KEY_A]);
        }
        argv.extend_from_slice(extra);
        let config = GatewayArgs::try_parse_from(argv).unwrap().into_config().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let now = Arc::new(AtomicU64::new(T0));
        let n = now.clone();
        let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            api::gateway::serve_with_clock(
                config,
                listener,
                async move {
                    let _ = rx.await;
                },
                clock,
            )
            .await
            .unwrap();
        });
        Self { addr, now, stop: Some(tx), handle: Some(handle) }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

fn host(id: &str) -> String {
    format!("{id}{SUFFIX}")
}

fn origin(id: &str) -> String {
    format!("http://{id}{SUFFIX}")
}

/// A response, body collected.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection and collects the answer.
async fn send(gw: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let (resp, _conn) = start_request(gw, req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

async fn start_request(gw: SocketAddr, req: Request<Full<Bytes>>) -> (Response<Incoming>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(gw).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender.send_request(req).await.unwrap(), conn)
}

fn get(id: &str, path: &str) -> http::request::Builder {
    Request::get(path).header("host", host(id))
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

// ---------------------------------------------------------------- redis fixtures

async fn conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis.client().get_multiplexed_async_connection().await.unwrap()
}

/// Writes a session hash as the api and worker would have.
async fn put_session(redis: &RedisServer, id: &str, status: &str, desired: &str, upstream: Option<SocketAddr>) {
    let mut c = conn(redis).await;
    let key = keys::session(id);
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut c).await.unwrap();
    let mut fields: Vec<(&str, String)> = vec![
        ("user_id", "u1".into()),
        ("status", status.into()),
        ("desired", desired.into()),
        ("generation", "3".into()),
        ("created_at_ms", "1000".into()),
        ("workspace_url", origin(id)),
    ];
    if let Some(up) = upstream {
        fields.push(("upstream", up.to_string()));
    }
    let _: () = c.hset_multiple(&key, &fields).await.unwrap();
}

/// What the worker's finish does for a session that became running.
async fn finish_running(redis: &RedisServer, id: &str, upstream: SocketAddr) {
    let mut c = conn(redis).await;
    let _: () = c
        .hset_multiple(keys::session(id), &[("status", "running"), ("upstream", &upstream.to_string())])
        .await
        .unwrap();
    let event = Event {
        job_id: JobId::from_random([7; 16]),
        session_id: SessionId::parse(id).unwrap(),
        command: Command::Wake,
        job_state: JobState::Succeeded,
        session_state: SessionState::Running,
        at_ms: T0,
        error: None,
        origin: Origin::Gateway,
    };
    let _: String = c.xadd(keys::EVENTS_STREAM, "*", &[(keys::EVENT_FIELD, event.encode().unwrap())]).await.unwrap();
}

/// Every job on the jobs stream.
async fn jobs(redis: &RedisServer) -> Vec<Job> {
    let mut c = conn(redis).await;
    let reply: redis::streams::StreamRangeReply = c.xrange_all(keys::JOBS_STREAM).await.unwrap();
    reply
        .ids
        .iter()
        .map(|e| match e.map.get(keys::PAYLOAD_FIELD) {
            Some(redis::Value::BulkString(b)) => Job::decode(b).unwrap(),
            other => panic!("job entry without payload: {other:?}"),
        })
        .collect()
}

fn link(keys_spec: &str, id: &str, expires_ms: u64, nonce: &str) -> String {
    Keys::parse(keys_spec).unwrap().sign(id, expires_ms, nonce)
}

/// Exchanges a fresh link for the cookie (`name=value`).
async fn login(gw: &Gw, id: &str) -> String {
    let token = link(KEY_A, id, T0 + 60_000, &format!("{:032x}", rand_u128()));
    let a = send(gw.addr, get(id, &format!("/?sm_token={token}")).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    a.header("set-cookie").unwrap().split(';').next().unwrap().to_owned()
}

fn rand_u128() -> u128 {
    static N: AtomicU64 = AtomicU64::new(1);
    u128::from(N.fetch_add(1, Ordering::SeqCst)) << 64 | u128::from(std::process::id())
}

/// Polls `check` until it holds (a bounded wait for a background flush, not a timed assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn proxies_http_with_forwarded_headers_and_without_hop_by_hop_or_our_cookie() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "aa01", "running", "running", Some(up.addr)).await;
    let cookie = login(&gw, "aa01").await;
    let a = send(
        gw.addr,
        Request::post("/echo?q=1")
            .header("host", host("aa01"))
            .header("cookie", format!("theirs=1; {cookie}"))
            .header("connection", "x-hop")
            .header("x-hop", "secret")
            .header("te", "trailers")
            .header("x-end", "kept")
            .body(Full::new(Bytes::from_static(b"hello body")))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let seen = a.json();
    let h = &seen["headers"];
    assert_eq!(seen["uri"], "/echo?q=1");
    assert_eq!(seen["body"], "hello body");
    assert_eq!(h["x-end"], "kept");
    assert!(h.get("x-hop").is_none() && h.get("te").is_none(), "{h}");
    assert_eq!(h["cookie"], "theirs=1", "the gateway's cookie never reaches the workspace");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], host("aa01"));
    gw.stop().await;
}

#[tokio::test]
async fn streams_response_bodies_as_they_come() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "aa02", "running", "running", Some(up.addr)).await;
    let cookie = login(&gw, "aa02").await;
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    *up.stream_tx.lock().await = Some(rx);
    tx.send(Bytes::from_static(b"first")).await.unwrap();
    let (resp, _c) =
        start_request(gw.addr, get("aa02", "/stream").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("x-upstream-hop").is_none(), "hop-by-hop removed from responses too");
    let mut body = resp.into_body();
    // The first chunk arrives while the workspace has not finished the body.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first");
    tx.send(Bytes::from_static(b"second")).await.unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
    gw.stop().await;
}

#[tokio::test]
async fn an_access_link_works_once_then_the_cookie_does() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "bb01", "running", "running", Some(up.addr)).await;
    let token = link(KEY_A, "bb01", T0 + 60_000, NONCE);
    let a = send(gw.addr, get("bb01", &format!("/some/path?x=1&sm_token={token}")).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.header("location"), Some("/some/path?x=1"), "redirect drops only the token");
    let set = a.header("set-cookie").unwrap();
    assert!(set.starts_with("sm_session="));
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    assert!(!set.to_ascii_lowercase().contains("domain"), "host-only cookie: {set}");
    assert!(!set.contains("Secure"), "plain http pattern: no Secure");
    let cookie = set.split(';').next().unwrap().to_owned();
    let ok = send(gw.addr, get("bb01", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);
    // Second use of the same link.
    let again = send(gw.addr, get("bb01", &format!("/?sm_token={token}")).body(empty()).unwrap()).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(again.json()["error"]["code"], "unauthorized");
    // The cookie is for this workspace only.
    put_session(&redis, "bb02", "running", "running", Some(up.addr)).await;
    let other = send(gw.addr, get("bb02", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}

#[tokio::test]
async fn expired_foreign_and_unknown_key_links_are_refused_rotated_keys_accepted() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let rotated = format!("{KEY_B},{KEY_A}");
    let gw = Gw::start(&redis, &["--access-keys", &rotated]).await;
    put_session(&redis, "cc01", "running", "running", Some(up.addr)).await;
    let try_link = |t: String| {
        let addr = gw.addr;
        async move { send(addr, get("cc01", &format!("/?sm_token={t}")).body(empty()).unwrap()).await.status }
    };
    assert_eq!(try_link(link(KEY_A, "cc01", T0, "0011223344556677889900aabbccddee")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        try_link(link(KEY_A, "cc02", T0 + 9_000, "1011223344556677889900aabbccddee")).await,
        StatusCode::UNAUTHORIZED
    );
    let unknown = "c:00000000000000000000000000000000000";
    assert_eq!(
        try_link(link(unknown, "cc01", T0 + 9_000, "2011223344556677889900aabbccddee")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(try_link("garbage".into()).await, StatusCode::UNAUTHORIZED);
    // Signed with the old key, still configured: accepted.
    assert_eq!(
        try_link(link(KEY_A, "cc01", T0 + 9_000, "3011223344556677889900aabbccddee")).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        try_link(link(KEY_B, "cc01", T0 + 9_000, "4011223344556677889900aabbccddee")).await,
        StatusCode::SEE_OTHER
    );
    // A link that was valid when signed expires by the gateway's clock.
    let t = link(KEY_A, "cc01", T0 + 9_000, "5011223344556677889900aabbccddee");
    gw.now.store(T0 + 9_000, Ordering::SeqCst);
    assert_eq!(try_link(t).await, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}

#[tokio::test]
async fn every_refusal_has_its_status_and_page() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "dd01", "running", "running", Some(up.addr)).await;
    // No cookie: 401, HTML for browsers, JSON otherwise.
    let html = send(gw.addr, get("dd01", "/").header("accept", "text/html").body(empty()).unwrap()).await;
    assert_eq!(html.status, StatusCode::UNAUTHORIZED);
    assert!(html.header("content-type").unwrap().starts_with("text/html") && html.body.contains("<html"));
    let json = send(gw.addr, get("dd01", "/").body(empty()).unwrap()).await;
    assert_eq!(json.status, StatusCode::UNAUTHORIZED);
    assert_eq!(json.json()["error"]["code"], "unauthorized");
    // Unknown host.
    let unknown = send(gw.addr, Request::get("/").header("host", "evil.example").body(empty()).unwrap()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"]["code"], "unknown_workspace");
    // Deleted session: its cookie gets 404; re-created with the same id: the old cookie is refused.
    let cookie = login(&gw, "dd01").await;
    put_session(&redis, "dd01", "deleted", "deleted", None).await;
    let deleted = send(gw.addr, get("dd01", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);
    assert_eq!(deleted.json()["error"]["code"], "session_not_found");
    put_session(&redis, "dd01", "running", "running", Some(up.addr)).await;
    let mut c = conn(&redis).await;
    let _: () = c.hset(keys::session("dd01"), "created_at_ms", "2000").await.unwrap();
    let recreated = send(gw.addr, get("dd01", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(recreated.status, StatusCode::UNAUTHORIZED);
    // Upstream refused while the session says running: 502, counted.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    put_session(&redis, "dd01", "running", "running", Some(closed)).await;
    let cookie = login(&gw, "dd01").await;
    let bad =
        send(gw.addr, get("dd01", "/").header("cookie", &cookie).header("accept", "text/html").body(empty()).unwrap())
            .await;
    assert_eq!(bad.status, StatusCode::BAD_GATEWAY);
    assert!(bad.body.contains("<html"));
    let metrics = send(gw.addr, Request::get("/metrics").header("host", "gw.internal").body(empty()).unwrap()).await;
    assert!(metrics.body.contains(r#"session_gateway_upstream_errors_total{kind="refused"} 1"#), "{}", metrics.body);
    assert!(metrics.body.contains(r#"session_gateway_requests_total{outcome="upstream_error"} 1"#));
    assert!(metrics.body.contains(r#"session_gateway_requests_total{outcome="unauthorized"}"#));
    // Probes.
    let live = send(gw.addr, Request::get("/livez").header("host", "gw.internal").body(empty()).unwrap()).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = send(gw.addr, Request::get("/readyz").header("host", "gw.internal").body(empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::OK);
    gw.stop().await;
}

/// A WebSocket handshake on a raw connection; returns the stream and the status line.
async fn ws_open(gw: SocketAddr, id: &str, cookie: Option<&str>, origin_value: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(gw).await.unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin_value}\r\n{cookie}\r\n",
        host(id)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (s, head.lines().next().unwrap_or("").to_owned())
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8, 1, 2, 3, 4];
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
    f
}

#[tokio::test]
async fn websockets_need_the_cookie_and_their_own_origin_then_echo_and_count_use() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "ee01", "running", "running", Some(up.addr)).await;
    let cookie = login(&gw, "ee01").await;
    let (_, line) = ws_open(gw.addr, "ee01", None, &origin("ee01")).await;
    assert!(line.contains(" 401 "), "{line}");
    let (_, line) = ws_open(gw.addr, "ee01", Some(&cookie), "http://evil.example").await;
    assert!(line.contains(" 403 "), "{line}");
    let (_, line) = ws_open(gw.addr, "ee01", Some(&cookie), &origin("ee02")).await;
    assert!(line.contains(" 403 "), "another workspace's origin: {line}");
    // Heartbeat-sized frames and pings are not use.
    gw.now.store(T0 + 1_000, Ordering::SeqCst);
    let (mut s, line) = ws_open(gw.addr, "ee01", Some(&cookie), &origin("ee01")).await;
    assert!(line.contains(" 101 "), "{line}");
    let beat = frame(2, &[0u8; 13]);
    s.write_all(&beat).await.unwrap();
    let mut echo = vec![0u8; beat.len()];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, beat, "bytes echo through the tunnel");
    let ping = frame(9, b"hi");
    s.write_all(&ping).await.unwrap();
    let mut echo = vec![0u8; ping.len()];
    s.read_exact(&mut echo).await.unwrap();
    // A barrier: another session's request is flushed after the frames above were copied.
    put_session(&redis, "ee09", "running", "running", Some(up.addr)).await;
    let other = login(&gw, "ee09").await;
    send(gw.addr, get("ee09", "/").header("cookie", &other).body(empty()).unwrap()).await;
    let mut c = conn(&redis).await;
    eventually("the barrier session is flushed", || {
        let mut c = c.clone();
        async move { c.zscore::<_, _, Option<u64>>(keys::ACTIVITY, "ee09").await.unwrap().is_some() }
    })
    .await;
    let score: Option<u64> = c.zscore(keys::ACTIVITY, "ee01").await.unwrap();
    assert_eq!(score, None, "an idle tab's heartbeats are not activity");
    // A keystroke in the editor: one frame over 100 bytes (measured: 250).
    gw.now.store(T0 + 2_000, Ordering::SeqCst);
    let typed = frame(1, &[b'k'; 120]);
    s.write_all(&typed).await.unwrap();
    let mut echo = vec![0u8; typed.len()];
    s.read_exact(&mut echo).await.unwrap();
    eventually("typing is flushed as activity", || {
        let mut c = c.clone();
        async move { c.zscore::<_, _, Option<u64>>(keys::ACTIVITY, "ee01").await.unwrap() == Some(T0 + 2_000) }
    })
    .await;
    let metrics = send(gw.addr, Request::get("/metrics").header("host", "gw.internal").body(empty()).unwrap()).await;
    assert!(metrics.body.contains("session_gateway_open_websockets 1"), "{}", metrics.body);
    drop(s);
    gw.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_navigations_to_a_sleeping_session_make_one_wake_job() {
    let redis = RedisServer::start().unwrap();
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "ff01", "sleeping", "sleeping", None).await;
    let cookie = login(&gw, "ff01").await;
    let mut all = Vec::new();
    for i in 0..50 {
        let req = get("ff01", "/")
            .header("cookie", &cookie)
            .header(
                if i % 2 == 0 { "sec-fetch-mode" } else { "accept" },
                if i % 2 == 0 { "navigate" } else { "text/html" },
            )
            .body(empty())
            .unwrap();
        all.push(tokio::spawn(send(gw.addr, req)));
    }
    for h in all {
        let a = h.await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert!(a.body.contains("Waking your workspace") && a.body.contains("/_sm/status"));
    }
    let jobs = jobs(&redis).await;
    assert_eq!(jobs.len(), 1, "exactly one wake job");
    assert_eq!(jobs[0].command, Command::Wake);
    assert_eq!(jobs[0].origin, Origin::Gateway);
    let status = send(gw.addr, get("ff01", "/_sm/status").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(status.json(), serde_json::json!({"status": "waking", "ready": false}));
    gw.stop().await;
}

#[tokio::test]
async fn background_traffic_and_anonymous_navigation_do_not_wake() {
    let redis = RedisServer::start().unwrap();
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "ff02", "sleeping", "sleeping", None).await;
    let cookie = login(&gw, "ff02").await;
    let xhr = send(gw.addr, get("ff02", "/api/poll").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(xhr.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(xhr.header("retry-after").is_some());
    let (_, line) = ws_open(gw.addr, "ff02", Some(&cookie), &origin("ff02")).await;
    assert!(line.contains(" 503 "), "a stale tab's reconnect: {line}");
    let anon = send(gw.addr, get("ff02", "/").header("sec-fetch-mode", "navigate").body(empty()).unwrap()).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert!(jobs(&redis).await.is_empty(), "nothing woke it");
    gw.stop().await;
}

async fn metrics(gw: &Gw) -> String {
    send(gw.addr, Request::get("/metrics").header("host", "gw.internal").body(empty()).unwrap()).await.body
}

#[tokio::test]
async fn held_requests_are_forwarded_when_the_wake_finishes() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "gg01", "waking", "running", None).await;
    let cookie = login(&gw, "gg01").await;
    let held = tokio::spawn(send(gw.addr, get("gg01", "/held").header("cookie", &cookie).body(empty()).unwrap()));
    let own = origin("gg01");
    let (addr, c2) = (gw.addr, cookie.clone());
    let ws = tokio::spawn(async move { ws_open(addr, "gg01", Some(&c2), &own).await.1 });
    eventually("both requests are held", || async { metrics(&gw).await.contains("session_gateway_holding 2") }).await;
    finish_running(&redis, "gg01", up.addr).await;
    let line = ws.await.unwrap();
    assert!(line.contains(" 101 "), "held upgrade forwarded: {line}");
    let a = held.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["uri"], "/held");
    let m = metrics(&gw).await;
    assert!(m.contains(r#"session_gateway_requests_total{outcome="held"} 2"#), "{m}");
    assert!(m.contains("session_gateway_hold_duration_seconds_count 2"));
    // Ready means running and the workspace answering /healthz: what the waking page polls.
    let poll = || send(gw.addr, get("gg01", "/_sm/status").header("cookie", &cookie).body(empty()).unwrap());
    assert_eq!(poll().await.json(), serde_json::json!({"status": "running", "ready": true}));
    up.healthy.store(false, Ordering::SeqCst);
    assert_eq!(poll().await.json(), serde_json::json!({"status": "running", "ready": false}));
    gw.stop().await;
}

#[tokio::test]
async fn held_requests_get_503_at_the_bound() {
    let redis = RedisServer::start().unwrap();
    let gw = Gw::start(&redis, &["--wake-hold-timeout", "1"]).await;
    put_session(&redis, "gg02", "waking", "running", None).await;
    let cookie = login(&gw, "gg02").await;
    let a = send(gw.addr, get("gg02", "/x").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["error"]["code"], "wake_timeout");
    assert!(a.header("retry-after").is_some());
    gw.stop().await;
}

#[tokio::test]
async fn activity_is_flushed_once_per_session_with_zadd_gt() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "hh01", "running", "running", Some(up.addr)).await;
    let cookie = login(&gw, "hh01").await;
    let mut c = conn(&redis).await;
    // Health paths are not use.
    send(gw.addr, get("hh01", "/healthz").header("cookie", &cookie).body(empty()).unwrap()).await;
    gw.now.store(T0 + 5_000, Ordering::SeqCst);
    for _ in 0..5 {
        send(gw.addr, get("hh01", "/a").header("cookie", &cookie).body(empty()).unwrap()).await;
    }
    eventually("activity flushed", || {
        let mut c = c.clone();
        async move { c.zscore::<_, _, Option<u64>>(keys::ACTIVITY, "hh01").await.unwrap() == Some(T0 + 5_000) }
    })
    .await;
    // Another replica recorded a later use: an older stamp never moves it back.
    let _: () = c.zadd(keys::ACTIVITY, "hh01", T0 + 9_000).await.unwrap();
    gw.now.store(T0 + 6_000, Ordering::SeqCst);
    send(gw.addr, get("hh01", "/b").header("cookie", &cookie).body(empty()).unwrap()).await;
    gw.stop().await; // the last flush happens on shutdown
    let score: Option<u64> = c.zscore(keys::ACTIVITY, "hh01").await.unwrap();
    assert_eq!(score, Some(T0 + 9_000));
}

#[tokio::test]
async fn header_mode_trusts_the_identity_header_from_trusted_proxies_only() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    put_session(&redis, "ii01", "running", "running", Some(up.addr)).await;
    let trusted = Gw::start(&redis, &["--workspace-auth", "header", "--trusted-proxies", "127.0.0.0/8"]).await;
    let with = send(trusted.addr, get("ii01", "/").header("x-auth-request-user", "alice").body(empty()).unwrap()).await;
    assert_eq!(with.status, StatusCode::OK);
    let without = send(trusted.addr, get("ii01", "/").body(empty()).unwrap()).await;
    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    trusted.stop().await;
    let untrusted = Gw::start(&redis, &["--workspace-auth", "header", "--trusted-proxies", "10.0.0.0/8"]).await;
    let forged =
        send(untrusted.addr, get("ii01", "/").header("x-auth-request-user", "alice").body(empty()).unwrap()).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "a client cannot name itself");
    untrusted.stop().await;
    let open = Gw::start(&redis, &["--workspace-auth", "none"]).await;
    assert_eq!(send(open.addr, get("ii01", "/").body(empty()).unwrap()).await.status, StatusCode::OK);
    open.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_open_websocket_finish_within_the_grace() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let mut gw = Gw::start(&redis, &[]).await;
    put_session(&redis, "jj01", "running", "running", Some(up.addr)).await;
    let cookie = login(&gw, "jj01").await;
    let (mut s, line) = ws_open(gw.addr, "jj01", Some(&cookie), &origin("jj01")).await;
    assert!(line.contains(" 101 "), "{line}");
    let _ = gw.stop.take().unwrap().send(());
    // Still open after shutdown began: the tab keeps working until it closes.
    let msg = frame(1, b"still here");
    s.write_all(&msg).await.unwrap();
    let mut echo = vec![0u8; msg.len()];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, msg);
    drop(s);
    // Closing the last WebSocket ends the drain well before the 25 s grace.
    gw.handle.take().unwrap().await.unwrap();
}
