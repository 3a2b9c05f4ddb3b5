//! The gateway's proxying against a real redis-server and a test workspace:
//! forwarded and hop-by-hop headers, streaming, WebSockets (Origin check,
//! echo, what counts as use), every error page and status, the shutdown grace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use gateway_support::*;

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

/// A workspace address that accepts connections and closes each at once, or holds each unanswered.
async fn bad_upstream(close_at_once: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            if close_at_once {
                drop(s);
            } else {
                held.push(s); // read nothing, answer nothing
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_reset_is_502_a_silent_workspace_504_and_redis_down_503() {
    let mut redis = RedisServer::start().unwrap();
    let gw = Gw::start(&redis, &["--upstream-read-timeout", "1"]).await;
    let (reset, t1) = bad_upstream(true).await;
    put_session(&redis, "kk01", "running", "running", Some(reset)).await;
    let cookie = login(&gw, "kk01").await;
    let a = send(gw.addr, get("kk01", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.json()["error"]["code"], "upstream_unavailable");
    let (silent, t2) = bad_upstream(false).await;
    put_session(&redis, "kk01", "running", "running", Some(silent)).await;
    let a = send(gw.addr, get("kk01", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    let m = metrics(&gw).await;
    assert!(m.contains(r#"session_gateway_upstream_errors_total{kind="reset"} 1"#), "{m}");
    assert!(m.contains(r#"session_gateway_upstream_errors_total{kind="read_timeout"} 1"#), "{m}");
    redis.kill();
    let a = send(gw.addr, get("kk01", "/").header("cookie", &cookie).body(empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["error"]["code"], "store_unavailable");
    let ready = send(gw.addr, Request::get("/readyz").header("host", "gw.internal").body(empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    t1.abort();
    t2.abort();
    gw.stop().await;
}
