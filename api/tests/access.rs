//! `POST /session/{uuid}/access` and the create's `access_url`: signed,
//! short-lived links that verify with [`api::access::Keys`] for their own
//! session only. Real redis-server, the api on port 0; every answer is
//! checked against `api/openapi.json` by the harness.
#![allow(clippy::unwrap_used)]

mod common;

use api::access::{Keys, TokenError};
use api::config::{TEST_ACCESS_KEYS, WorkspaceAuth};
use common::{Api, KEY, config, request, seed_session, setup};
use testkit::RedisServer;

/// The token of an access link, and the URL without it.
fn split(url: &str) -> (&str, &str) {
    let (base, token) = url.split_once("/?sm_token=").unwrap_or_else(|| panic!("no /?sm_token in {url}"));
    (base, token)
}

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap()
}

fn ms_of(old_timestamp: &str) -> u64 {
    // 2025-11-20T13:05:20.884405, UTC
    let ts: jiff::civil::DateTime = old_timestamp.parse().unwrap();
    u64::try_from(ts.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_millisecond()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_link_verifies_for_its_session_only_and_expires_within_five_minutes() {
    let (redis, api) = setup().await;
    seed_session(&redis, "0fa6debc", "u@example.com", "running", "running", 1);
    let before = now_ms();
    let r = api.post("/session/0fa6debc/access", None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let (base, token) = split(v["access_url"].as_str().unwrap());
    assert_eq!(base, "https://vs-code-0fa6debc.preview.example.com");
    let expires = ms_of(v["expires_at"].as_str().unwrap());
    assert!(expires > before && expires <= now_ms() + 5 * 60 * 1000, "expires_at {expires} is within 5 minutes");

    let keys = Keys::parse(TEST_ACCESS_KEYS).unwrap();
    let ok = keys.verify(token, "0fa6debc", now_ms()).unwrap();
    assert_eq!(ok.nonce.len(), 32, "16 random bytes, hex");
    // The link names its expiry (to the ms; the view shows it to the µs).
    assert_eq!(ok.expires_ms / 1000, expires / 1000);
    assert_eq!(keys.verify(token, "0fa6debd", now_ms()), Err(TokenError::BadSignature), "another session");
    assert_eq!(keys.verify(token, "0fa6debc", ok.expires_ms), Err(TokenError::Expired));
    let other = Keys::parse("other:fedcba9876543210fedcba9876543210").unwrap();
    assert_eq!(other.verify(token, "0fa6debc", now_ms()), Err(TokenError::UnknownKey));

    // Every link is new: a fresh nonce each time.
    let again = api.post("/session/0fa6debc/access", None).await.json();
    let (_, token2) = split(again["access_url"].as_str().unwrap());
    assert_ne!(keys.verify(token2, "0fa6debc", now_ms()).unwrap().nonce, ok.nonce);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_carries_an_access_url_for_the_new_session() {
    let (_redis, api) = setup().await;
    let v = api.create("user@example.com").await.json();
    let uuid = v["uuid"].as_str().unwrap();
    let (base, token) = split(v["access_url"].as_str().unwrap());
    assert_eq!(base, v["workspace_url"].as_str().unwrap(), "the workspace URL with a token");
    let keys = Keys::parse(TEST_ACCESS_KEYS).unwrap();
    assert!(keys.verify(token, uuid, now_ms()).is_ok());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_deleted_and_unauthenticated_requests_get_no_link() {
    let (redis, api) = setup().await;
    seed_session(&redis, "dead0001", "u@example.com", "deleted", "deleted", 3);
    seed_session(&redis, "dying001", "u@example.com", "running", "deleted", 2);
    for id in ["0fa6debc", "dead0001", "dying001"] {
        assert_eq!(api.post(&format!("/session/{id}/access"), None).await.error(404), "session_not_found", "{id}");
    }
    assert_eq!(api.post("/session/NOT_AN_ID/access", None).await.error(400), "invalid_uuid");
    seed_session(&redis, "0fa6debc", "u@example.com", "sleeping", "sleeping", 1);
    let wrong = request(api.addr, "POST", "/session/0fa6debc/access", &[("x-api-key", "wrong-key")], None).await;
    assert_eq!(wrong.error(401), "invalid_api_key");
    let missing = request(api.addr, "POST", "/session/0fa6debc/access", &[], None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(request(api.addr, "GET", "/session/0fa6debc/access", &[("x-api-key", KEY)], None).await.status, 405);
    // A sleeping session gets a link: opening it wakes the workspace.
    assert_eq!(api.post("/session/0fa6debc/access", None).await.status, 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_links_are_rate_limited_like_commands() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = config(&redis);
    cfg.rate_per_key = 2;
    let api = Api::start(cfg).await;
    seed_session(&redis, "0fa6debc", "u@example.com", "running", "running", 1);
    for _ in 0..2 {
        assert_eq!(api.post("/session/0fa6debc/access", None).await.status, 200);
    }
    let r = api.post("/session/0fa6debc/access", None).await;
    assert_eq!(r.error(429), "rate_limited");
    assert!(r.header("retry-after").is_some());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_workspace_auth_none_the_link_is_the_plain_url() {
    let redis = RedisServer::start().unwrap();
    let mut cfg = config(&redis);
    cfg.workspace_auth = WorkspaceAuth::None;
    cfg.access_keys = None;
    let api = Api::start(cfg).await;
    seed_session(&redis, "0fa6debc", "u@example.com", "running", "running", 1);
    let v = api.post("/session/0fa6debc/access", None).await.json();
    assert_eq!(v["access_url"], "https://vs-code-0fa6debc.preview.example.com");
    let c = api.create("user@example.com").await.json();
    assert_eq!(c["access_url"], c["workspace_url"]);
    api.stop().await;
}
