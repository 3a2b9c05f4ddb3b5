//! The gateway's access control: access links exchanged once for a host-only
//! cookie, expiry by the gateway's clock, links for another session, key
//! rotation; the `header` and `none` modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use gateway_support::*;

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
async fn over_https_the_cookie_is_secure_and_websockets_need_the_https_origin() {
    let redis = RedisServer::start().unwrap();
    let up = Upstream::start().await;
    let gw = Gw::start(&redis, &["--workspace-url-pattern", "https://{uuid}.ws.test"]).await;
    put_session(&redis, "ll01", "running", "running", Some(up.addr)).await;
    let token = link(KEY_A, "ll01", T0 + 60_000, NONCE);
    let a = send(gw.addr, get("ll01", &format!("/?sm_token={token}")).body(empty()).unwrap()).await;
    let set = a.header("set-cookie").unwrap();
    assert!(set.contains("; Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let (_, line) = ws_open(gw.addr, "ll01", Some(&cookie), &origin("ll01")).await;
    assert!(line.contains(" 403 "), "http origin on an https workspace: {line}");
    let (_, line) = ws_open(gw.addr, "ll01", Some(&cookie), "https://ll01.ws.test").await;
    assert!(line.contains(" 101 "), "{line}");
    let seen = send(gw.addr, get("ll01", "/").header("cookie", &cookie).body(empty()).unwrap()).await.json();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    gw.stop().await;
}
