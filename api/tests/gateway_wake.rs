//! Wake on access: one wake job under 50 concurrent navigations, background
//! traffic that does not wake, held requests forwarded when the (simulated)
//! worker finishes or refused at the bound, and the activity flush.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use gateway_support::*;

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
