//! Test harness shared by the gateway's integration tests: a test
//! workspace (HTTP echo, a streamed response, `/healthz`, a WebSocket byte
//! echo), the gateway on port 0 with a clock the test sets, a small HTTP
//! client, and the Redis fixtures (session hashes, the worker's finish
//! simulated as status + upstream + an event, the jobs on the stream).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub use std::collections::HashMap;
pub use std::convert::Infallible;
pub use std::net::SocketAddr;
pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub use std::time::Duration;

pub use api::access::Keys;
pub use api::gateway::{Clock, GatewayArgs};
pub use bytes::Bytes;
pub use clap::Parser as _;
pub use http::{Request, Response, StatusCode};
pub use http_body_util::{BodyExt, Full};
pub use hyper::body::{Frame, Incoming};
pub use hyper_util::rt::TokioIo;
pub use proto_types::{Command, Event, Job, JobId, JobState, Origin, SessionId, SessionState, keys};
pub use redis::AsyncCommands;
pub use testkit::RedisServer;
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use tokio::net::{TcpListener, TcpStream};
pub use tokio::sync::{mpsc, oneshot};

pub const KEY_A: &str = "a:0123456789abcdef0123456789abcdef";
pub const KEY_B: &str = "b:fedcba9876543210fedcba9876543210";
pub const NONCE: &str = "00112233445566778899aabbccddeeff";
pub const SUFFIX: &str = ".ws.test";
pub const T0: u64 = 1_800_000_000_000;

// ---------------------------------------------------------------- upstream

/// The test workspace.
pub struct Upstream {
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    /// Chunks of the next `/stream` response.
    pub stream_tx: Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Bytes>>>>,
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
    pub async fn start() -> Self {
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
pub struct Gw {
    pub addr: SocketAddr,
    pub now: Arc<AtomicU64>,
    pub stop: Option<oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    pub async fn start(redis: &RedisServer, extra: &[&str]) -> Self {
        let url = redis.url();
        let mut argv = vec!["gateway", "--redis-url", &url, "--activity-flush-ms", "20", "--session-cache-ms", "0"];
        if !extra.contains(&"--workspace-url-pattern") {
            argv.extend_from_slice(&["--workspace-url-pattern", "http://{uuid}.ws.test"]);
        }
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

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

pub fn host(id: &str) -> String {
    format!("{id}{SUFFIX}")
}

pub fn origin(id: &str) -> String {
    format!("http://{id}{SUFFIX}")
}

/// A response, body collected.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection and collects the answer.
pub async fn send(gw: SocketAddr, req: Request<Full<Bytes>>) -> Answer {
    let (resp, _conn) = start_request(gw, req).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

pub async fn start_request(
    gw: SocketAddr,
    req: Request<Full<Bytes>>,
) -> (Response<Incoming>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(gw).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender.send_request(req).await.unwrap(), conn)
}

pub fn get(id: &str, path: &str) -> http::request::Builder {
    Request::get(path).header("host", host(id))
}

pub fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

// ---------------------------------------------------------------- redis fixtures

pub async fn conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis.client().get_multiplexed_async_connection().await.unwrap()
}

/// Writes a session hash as the api and worker would have.
pub async fn put_session(redis: &RedisServer, id: &str, status: &str, desired: &str, upstream: Option<SocketAddr>) {
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
pub async fn finish_running(redis: &RedisServer, id: &str, upstream: SocketAddr) {
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
pub async fn jobs(redis: &RedisServer) -> Vec<Job> {
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

pub fn link(keys_spec: &str, id: &str, expires_ms: u64, nonce: &str) -> String {
    Keys::parse(keys_spec).unwrap().sign(id, expires_ms, nonce)
}

/// Exchanges a fresh link for the cookie (`name=value`).
pub async fn login(gw: &Gw, id: &str) -> String {
    let token = link(KEY_A, id, T0 + 60_000, &format!("{:032x}", rand_u128()));
    let a = send(gw.addr, get(id, &format!("/?sm_token={token}")).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    a.header("set-cookie").unwrap().split(';').next().unwrap().to_owned()
}

pub fn rand_u128() -> u128 {
    static N: AtomicU64 = AtomicU64::new(1);
    u128::from(N.fetch_add(1, Ordering::SeqCst)) << 64 | u128::from(std::process::id())
}

/// Polls `check` until it holds (a bounded wait for a background flush, not a timed assertion).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
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

/// A WebSocket handshake on a raw connection; returns the stream and the status line.
pub async fn ws_open(gw: SocketAddr, id: &str, cookie: Option<&str>, origin_value: &str) -> (TcpStream, String) {
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
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8, 1, 2, 3, 4];
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]));
    f
}

pub async fn metrics(gw: &Gw) -> String {
    send(gw.addr, Request::get("/metrics").header("host", "gw.internal").body(empty()).unwrap()).await.body
}
