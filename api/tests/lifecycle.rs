//! The lifecycle fields of the api: a session's own idle timeout (at
//! create and through the keepalive), the keepalive itself, job origins,
//! and a session's last transition and next automatic action. Every
//! response is checked against the OpenAPI document by `request`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{redis_conn, setup};
use proto_types::keys;
use redis::Commands as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_at_create_is_bounded_and_shown() {
    let (redis, api) = setup().await;
    let r = api.post("/session/create", Some(r#"{"user_id":"u@example.com","idle_timeout_secs":600}"#)).await;
    assert_eq!(r.status, 202);
    let uuid = r.json()["uuid"].as_str().unwrap().to_owned();
    let s = api.get(&format!("/session/{uuid}")).await.json();
    assert_eq!(s["idle_timeout_secs"], 600);
    assert_eq!(s["next_action"], serde_json::Value::Null);
    let due: Option<f64> = redis_conn(&redis).zscore(keys::LIFECYCLE_DUE, &uuid).unwrap();
    assert!(due.is_some(), "a new session is due for the sweeper's first look");
    for bad in ["0", "86401"] {
        let body = format!(r#"{{"user_id":"u@example.com","idle_timeout_secs":{bad}}}"#);
        assert_eq!(api.post("/session/create", Some(&body)).await.error(400), "invalid_idle_timeout");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keepalive_records_use_and_can_change_the_timeout() {
    let (redis, api) = setup().await;
    let uuid = api.create("u@example.com").await.json()["uuid"].as_str().unwrap().to_owned();
    let r = api.post(&format!("/session/{uuid}/activity"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("ratelimit-remaining").is_some(), "rate-limited like the commands");
    let v = r.json();
    assert_eq!((v["uuid"].as_str(), &v["idle_timeout_secs"]), (Some(uuid.as_str()), &serde_json::Value::Null));
    let mut conn = redis_conn(&redis);
    let seen: Option<f64> = conn.zscore(keys::ACTIVITY, &uuid).unwrap();
    assert!(seen.is_some());

    let r = api.post(&format!("/session/{uuid}/activity"), Some(r#"{"idle_timeout_secs":120}"#)).await;
    assert_eq!(r.json()["idle_timeout_secs"], 120);
    assert_eq!(api.get(&format!("/session/{uuid}")).await.json()["idle_timeout_secs"], 120);
    let too_long = api.post(&format!("/session/{uuid}/activity"), Some(r#"{"idle_timeout_secs":999999}"#)).await;
    assert_eq!(too_long.error(400), "invalid_idle_timeout");
    let unknown = api.post(&format!("/session/{uuid}/activity"), Some(r#"{"wake":true}"#)).await;
    assert_eq!(unknown.error(400), "unknown_field");
    assert_eq!(api.post("/session/nosuch/activity", None).await.error(404), "session_not_found");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_show_their_origin_and_sessions_their_transitions() {
    let (redis, api) = setup().await;
    let created = api.create("u@example.com").await.json();
    let uuid = created["uuid"].as_str().unwrap().to_owned();
    let job = api.get(created["status_url"].as_str().unwrap()).await.json();
    assert_eq!(job["origin"], "api");
    assert_eq!(api.get(&format!("/session/{uuid}")).await.json()["last_transition"], serde_json::Value::Null);

    // What the sweeper leaves: a planned sleep; what a delete leaves: a transition.
    let mut conn = redis_conn(&redis);
    let _: () = conn.hset(keys::session(&uuid), "next_action", "sleep 1700000000000").unwrap();
    let s = api.get(&format!("/session/{uuid}")).await.json();
    assert_eq!(s["next_action"]["action"], "sleep");
    assert!(s["next_action"]["at"].as_str().unwrap().starts_with("2023-11-14T22:13:20"));
    assert_eq!(api.delete(&format!("/session/{uuid}")).await.status, 202);
    let t = &api.get(&format!("/session/{uuid}")).await.json()["last_transition"];
    assert_eq!(
        (t["from"].as_str(), t["to"].as_str(), t["origin"].as_str()),
        (Some("creating"), Some("deleting"), Some("api"))
    );
    api.stop().await;
}
