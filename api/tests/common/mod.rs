//! Test harness: the api on port 0 against a private redis-server, and a
//! tiny raw HTTP/1.1 client (raw, so hostile requests can be sent as bytes).
//! Every answer [`request`] returns is first held against `api/openapi.json`
//! (see [`contract`]), so every test also checks the document.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod contract;

use std::net::SocketAddr;
use std::time::Duration;

use api::Config;
use testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const KEY: &str = "test-key-1";

/// A running api.
pub struct Api {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), api::ServeError>>>,
}

impl Api {
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(api::serve(config, listener, async move {
            let _ = rx.await;
        }));
        Self { addr, stop: Some(tx), handle: Some(handle) }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h).await.unwrap().unwrap().unwrap();
        }
    }

    pub fn stopper(&mut self) -> oneshot::Sender<()> {
        self.stop.take().unwrap()
    }

    pub async fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[("x-api-key", KEY)], None).await
    }

    pub async fn post(&self, path: &str, body: Option<&str>) -> Resp {
        let mut h = vec![("x-api-key", KEY)];
        if body.is_some() {
            h.push(("content-type", "application/json"));
        }
        request(self.addr, "POST", path, &h, body.map(str::as_bytes)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        request(self.addr, "DELETE", path, &[("x-api-key", KEY)], None).await
    }

    pub async fn create(&self, user: &str) -> Resp {
        self.post("/session/create", Some(&format!(r#"{{"user_id":"{user}"}}"#))).await
    }
}

/// A private redis and an api on it with test defaults.
pub async fn setup() -> (RedisServer, Api) {
    let redis = RedisServer::start().unwrap();
    let api = Api::start(config(&redis)).await;
    (redis, api)
}

pub fn config(redis: &RedisServer) -> Config {
    let mut c = Config::for_tests(&redis.url(), &[KEY]);
    c.rate_per_ip = 10_000;
    c.rate_per_key = 10_000;
    c.redis_timeout = Duration::from_millis(500);
    c
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and the JSON error shape; returns the code.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.body));
        let v = self.json();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(!msg.is_empty());
        v["error"]["code"].as_str().unwrap().to_owned()
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        raw.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        raw.extend_from_slice(b);
    }
    let resp = raw_request(addr, &raw).await;
    contract::contract().assert_conforms(method, path, &resp);
    resp
}

/// Sends raw bytes and parses the answer.
pub async fn raw_request(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading everything we send.
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await.unwrap().ok();
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp { status, headers, body: buf[end + 4..].to_vec() }
}

/// A synchronous redis connection for seeding and inspecting.
pub fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis.client().get_connection().unwrap()
}

/// Writes a session hash as the worker would.
pub fn seed_session(redis: &RedisServer, id: &str, user: &str, status: &str, desired: &str, generation: u64) {
    let mut c = redis_conn(redis);
    let key = format!("{{sm}}:session:{id}");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("user_id")
        .arg(user)
        .arg("status")
        .arg(status)
        .arg("desired")
        .arg(desired)
        .arg("generation")
        .arg(generation)
        .arg("created_at_ms")
        .arg(1_763_643_920_884u64)
        .arg("last_activity_ms")
        .arg(1_763_643_920_900u64)
        .arg("replicas")
        .arg(1)
        .arg("workspace_url")
        .arg(format!("https://vs-code-{id}.preview.example.com"))
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("ZADD").arg("{sm}:sessions").arg(1_763_643_920_884u64).arg(id).query(&mut c).unwrap();
}

/// Number of entries in the jobs stream.
pub fn stream_len(redis: &RedisServer) -> u64 {
    redis::cmd("XLEN").arg("{sm}:jobs").query(&mut redis_conn(redis)).unwrap()
}

/// Polls until `f` is true or 30 s pass.
pub async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The checksum seeded backups carry.
pub const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Writes one succeeded backup record and indexes it, as `finish.lua` does.
pub fn seed_backup(redis: &RedisServer, id: &str, session: &str, user: &str, at_ms: u64, size: u64) {
    use proto_types::{keys, record::backup as field};
    let mut c = redis_conn(redis);
    let location = format!("app-{session}-20251120-130829.zip");
    let fields: [(&str, String); 9] = [
        (field::ID, id.into()),
        (field::SESSION, session.into()),
        (field::USER, user.into()),
        (field::CREATED_AT, at_ms.to_string()),
        (field::KIND, field::KIND_ARCHIVE.into()),
        (field::LOCATION, location),
        (field::SIZE_BYTES, size.to_string()),
        (field::SHA256, SHA.into()),
        (field::STATE, field::STATE_SUCCEEDED.into()),
    ];
    let mut hset = redis::cmd("HSET");
    hset.arg(keys::backup(id));
    for (k, v) in fields {
        hset.arg(k).arg(v);
    }
    let _: () = hset.query(&mut c).unwrap();
    for index in [keys::user_backups(user), keys::session_backups(session)] {
        let _: () = redis::cmd("ZADD").arg(index).arg(at_ms).arg(id).query(&mut c).unwrap();
    }
}
