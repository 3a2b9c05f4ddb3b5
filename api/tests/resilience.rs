//! Behaviour under pressure: the shared rate limit, Redis outages and
//! recovery, hostile input, and graceful shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Api, KEY, raw_request, request, setup, stream_len};
use testkit::{Persistence, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_shared_by_two_instances() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    // 4 per minute: a token refills only every 15 s, far longer than this test's requests take.
    cfg.rate_per_ip = 4;
    let one = Api::start(cfg.clone()).await;
    let two = Api::start(cfg).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let api = if i % 2 == 0 { &one } else { &two };
        let r = api.get("/sessions").await;
        assert_eq!(r.header("ratelimit-limit"), Some("4"));
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200; 4]);
    for api in [&one, &two] {
        let r = api.create("u@example.com").await;
        assert_eq!(r.error(429), "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        assert_eq!(r.header("ratelimit-remaining"), Some("0"));
        assert!(r.header("ratelimit-reset").is_some());
    }
    assert_eq!(stream_len(&redis), 0, "rejected requests never touch the jobs stream");
    // Probes are never limited.
    assert_eq!(request(one.addr, "GET", "/health", &[], None).await.status, 200);
    // Wrong keys count against the IP too.
    assert_eq!(request(one.addr, "GET", "/sessions", &[("x-api-key", "guess")], None).await.status, 429);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_limit_and_trusted_proxies() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    cfg.rate_per_ip = 3;
    cfg.rate_per_key = 5;
    cfg.trusted_proxies = api::http::net::parse_cidrs("127.0.0.0/8").unwrap();
    let api = Api::start(cfg).await;
    let from = |ip: &'static str| [("x-api-key", KEY), ("x-forwarded-for", ip)];
    // Each forwarded client has its own IP bucket of 3...
    for ip in ["1.1.1.1", "2.2.2.2"] {
        for _ in 0..2 {
            assert_eq!(request(api.addr, "GET", "/sessions", &from(ip), None).await.status, 200);
        }
    }
    // ...but the key's bucket of 5 is shared by all of them.
    assert_eq!(request(api.addr, "GET", "/sessions", &from("3.3.3.3"), None).await.status, 200);
    let r = request(api.addr, "GET", "/sessions", &from("4.4.4.4"), None).await;
    assert_eq!(r.error(429), "rate_limited");
    assert_eq!(r.header("ratelimit-limit"), Some("5"));
    let metrics = request(api.addr, "GET", "/metrics", &from("5.5.5.5"), None).await;
    assert_eq!(metrics.status, 429);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back() {
    let mut redis = RedisServer::start_with(Persistence::AofAlways).unwrap();
    let api = Api::start(common::config(&redis)).await;
    let created = api.create("u@example.com").await;
    assert_eq!(created.status, 202);
    let uuid = created.json()["uuid"].as_str().unwrap().to_owned();
    redis.kill();

    let h = request(api.addr, "GET", "/health", &[], None).await;
    assert_eq!(h.status, 503);
    let v = h.json();
    assert_eq!(v["redis"], "disconnected");
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(request(api.addr, "GET", "/readyz", &[], None).await.status, 503);
    assert_eq!(request(api.addr, "GET", "/livez", &[], None).await.status, 200);
    let c = api.create("v@example.com").await;
    assert_eq!(c.error(503), "store_unavailable");
    assert!(c.header("retry-after").is_some());
    assert_eq!(api.post(&format!("/session/{uuid}/sleep"), None).await.error(503), "store_unavailable");
    assert_eq!(api.get(&format!("/session/{uuid}")).await.error(503), "store_unavailable");

    redis.restart().unwrap();
    let back =
        common::eventually(|| async { request(api.addr, "GET", "/health", &[], None).await.status == 200 }).await;
    assert!(back, "health recovers once Redis is back");
    let s = api.get(&format!("/session/{uuid}")).await;
    assert_eq!(s.status, 200);
    assert_eq!(api.post(&format!("/session/{uuid}/sleep"), None).await.status, 202);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_gets_a_5xx() {
    let (redis, api) = setup().await;
    common::seed_session(&redis, "abc", "u", "running", "running", 1);
    let a = api.addr;
    let deep = format!(r#"{{"user_id":{}"x"{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let huge_num = format!(r#"{{"user_id":{}}}"#, "9".repeat(5000));
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        huge_num.into_bytes(),
        br#"{"user_id":1e999999}"#.to_vec(),
        b"\xff\xfe\xfd{\"user_id\":\"a\"}".to_vec(),
        br#"{"user_id":"\ud800"}"#.to_vec(),
        br#"{"user_id":"a\u0000b"}"#.to_vec(),
        br#"{"user_id":"a","user_id":"b"}"#.to_vec(),
        br#"["user_id"]"#.to_vec(),
        b"null".to_vec(),
        vec![b'{'; 15_000],
        "{\"user_id\":\"ü\u{202e}\"}".as_bytes().to_vec(),
    ];
    let h = [("x-api-key", KEY), ("content-type", "application/json")];
    for body in &bodies {
        for path in ["/session/create", "/session/abc/wake"] {
            let r = request(a, "POST", path, &h, Some(body)).await;
            assert!(
                r.status < 500,
                "{path} {} for {:?}",
                r.status,
                String::from_utf8_lossy(&body[..body.len().min(60)])
            );
            assert!(r.json()["error"]["code"].is_string() || r.status == 202);
        }
    }
    let paths = [
        "/session/%ff%fe".to_owned(),
        format!("/session/{}", "a".repeat(5000)),
        "/session/../../etc/passwd".to_owned(),
        "/jobs/%00".to_owned(),
        "/sessions?user_id=%".to_owned(),
        format!("/sessions?limit={}", "9".repeat(100)),
        format!("/sessions?cursor={}:x", "9".repeat(100)),
        "/sessions?&&&=&".to_owned(),
    ];
    for p in &paths {
        let r = request(a, "GET", p, &[("x-api-key", KEY)], None).await;
        assert!(r.status < 500 && r.status >= 400, "{p}: {}", r.status);
    }
    // Non-UTF-8 bytes in the request line and headers.
    let r = raw_request(
        a,
        b"GET /session/\xff\xfe HTTP/1.1\r\nhost: x\r\nx-api-key: test-key-1\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(r.status < 500, "{}", r.status);
    let r =
        raw_request(a, b"GET /sessions HTTP/1.1\r\nhost: x\r\nx-api-key: \xff\xfe\r\nconnection: close\r\n\r\n").await;
    assert_eq!(r.status, 401);
    common::contract::contract().assert_conforms("GET", "/sessions", &r);
    // A header flood and an overlong header are refused before any handler.
    let mut flood = b"GET /sessions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_vec();
    for i in 0..500 {
        flood.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    let r = raw_request(a, &flood).await;
    assert!((400..500).contains(&r.status), "{}", r.status);
    let long =
        format!("GET /sessions HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\nconnection: close\r\n\r\n", "k".repeat(100_000));
    let r = raw_request(a, long.as_bytes()).await;
    assert!((400..500).contains(&r.status), "{}", r.status);
    // A lying Content-Length larger than the cap.
    let r = raw_request(a, b"POST /session/create HTTP/1.1\r\nhost: x\r\nx-api-key: test-key-1\r\ncontent-type: application/json\r\ncontent-length: 99999999999\r\nconnection: close\r\n\r\n{}").await;
    assert_eq!(r.status, 413);
    common::contract::contract().assert_conforms("POST", "/session/create", &r);
    // Garbage instead of HTTP.
    let r = raw_request(a, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").await;
    assert_eq!(r.status, 400);
    // Still healthy, and nothing hostile was queued.
    assert_eq!(request(a, "GET", "/health", &[], None).await.status, 200);
    assert_eq!(stream_len(&redis), 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    cfg.header_read_timeout = Duration::from_secs(1);
    let api = Api::start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (possibly with a 408) instead of waiting forever.
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after the header timeout");
    if !buf.is_empty() {
        assert!(!String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 5"));
    }
    // Other clients are unaffected.
    assert_eq!(request(api.addr, "GET", "/livez", &[], None).await.status, 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let (_redis, mut api) = setup().await;
    let addr = api.addr;
    // A request whose body is still arriving when shutdown starts.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = br#"{"user_id":"late@example.com"}"#;
    let head = format!(
        "POST /session/create HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = api.stopper().send(());
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(&body[5..]).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let r = common::parse(&buf);
    assert_eq!(r.status, 202, "the in-flight request completes");
    common::contract::contract().assert_conforms("POST", "/session/create", &r);
    // New connections are refused once the listener is closed.
    let refused = common::eventually(|| async { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
    assert!(refused);
    api.stop().await;
}

/// The binary refuses to start without a key or with the old default key,
/// with exit status 64 and a one-line reason.
#[test]
fn refuses_to_start_without_a_real_key() {
    for keys in ["", "your-secure-api-key-change-in-production"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
            .env_remove("API_KEYS_FILE")
            .env("API_KEYS", keys)
            .env("API_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{keys:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("API key") || err.contains("API_KEYS"), "{err}");
    }
}

/// Access control is on by default: without access-link keys the binary
/// refuses to start (exit 64, one line naming `ACCESS_KEYS` and the way
/// out), and bad keys are refused the same way.
#[test]
fn refuses_to_start_without_access_keys_unless_told_workspaces_are_open() {
    for (keys, reason) in [("", "WORKSPACE_AUTH=none"), ("k1:too-short", "shorter than 32 bytes")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_api"))
            .env_remove("API_KEYS_FILE")
            .env_remove("WORKSPACE_AUTH")
            .env("API_KEYS", "a-real-key")
            .env("ACCESS_KEYS", keys)
            .env("API_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{keys:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("ACCESS_KEYS") && err.contains(reason), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_their_turn() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    cfg.max_connections = 1;
    let api = Api::start(cfg).await;
    let hog = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    // Give the server time to accept the hog so it holds the only slot.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = api.addr;
    let mut waiting = tokio::spawn(async move { request(addr, "GET", "/livez", &[], None).await });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
    assert!(early.is_err(), "a second connection is served while the cap is reached");
    drop(hog);
    let r = tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_gets_408_not_5xx() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    cfg.body_read_timeout = Duration::from_secs(1);
    let api = Api::start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let head = format!(
        "POST /session/create HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: 40\r\nconnection: close\r\n\r\n{{\"user"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let r = common::parse(&buf);
    assert_eq!(r.error(408), "body_timeout");
    common::contract::contract().assert_conforms("POST", "/session/create", &r);
    assert_eq!(stream_len(&redis), 0);
    api.stop().await;
}

/// Regression: the rate-limit script is sent to Redis only until it is
/// cached there; when Redis forgets it (restart, `SCRIPT FLUSH`) the next
/// request must load it again instead of failing open or erroring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_survives_a_flushed_script_cache() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    cfg.rate_per_ip = 3;
    let api = Api::start(cfg).await;
    assert_eq!(api.get("/sessions").await.header("ratelimit-remaining"), Some("2"));
    let mut conn = common::redis_conn(&redis);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
    let r = api.get("/sessions").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("1"), "the limit is still enforced after the flush");
    assert_eq!(api.get("/sessions").await.status, 200);
    assert_eq!(api.get("/sessions").await.error(429), "rate_limited");
    api.stop().await;
}

/// Calls of one Redis command since the last `CONFIG RESETSTAT`.
fn calls(redis: &RedisServer, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut common::redis_conn(redis)).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_costs_redis_two_script_calls_and_one_read() {
    let (redis, api) = setup().await;
    // Warm up: both scripts get loaded into Redis' cache.
    let created = api.create("u@example.com").await;
    assert_eq!(created.status, 202);
    let sid = created.json()["uuid"].as_str().unwrap().to_owned();
    common::seed_session(&redis, &sid, "u@example.com", "running", "running", 1);
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut common::redis_conn(&redis)).unwrap();

    // A command on an existing session: the limiter (IP and key buckets in
    // one call), one read of the session, the enqueue script.
    let r = api.post(&format!("/session/{sid}/sleep"), None).await;
    assert_eq!(r.status, 202, "body: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("ratelimit-limit"), Some("10000"));
    assert_eq!(calls(&redis, "evalsha"), 2);
    assert_eq!(calls(&redis, "hgetall"), 1);

    // Create draws a fresh id and skips the read.
    let r = api.create("v@example.com").await;
    assert_eq!(r.status, 202, "body: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(calls(&redis, "evalsha"), 4);
    assert_eq!(calls(&redis, "hgetall"), 1);
    assert_eq!(calls(&redis, "eval") + calls(&redis, "script|load"), 0, "scripts are sent once");
    assert_eq!(stream_len(&redis), 3);

    // A command for a session that does not exist: the limiter's read answers it.
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut common::redis_conn(&redis)).unwrap();
    assert_eq!(api.post("/session/0badc0de/wake", None).await.error(404), "session_not_found");
    assert_eq!((calls(&redis, "evalsha"), calls(&redis, "hgetall")), (1, 1));

    // With the script cache flushed, a command still gets its verdict and its job.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut common::redis_conn(&redis)).unwrap();
    let r = api.post(&format!("/session/{sid}/wake"), None).await;
    assert_eq!(r.status, 202, "body: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("ratelimit-limit"), Some("10000"));
    assert_eq!(stream_len(&redis), 4);
    api.stop().await;
}
