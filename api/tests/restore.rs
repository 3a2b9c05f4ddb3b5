//! `POST /session/create` with `restore_from`, against a real redis-server:
//! which backups may be restored by whom, and that a refused create leaves
//! nothing behind. Answers are checked against `openapi.json` by
//! `common::request`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Api, KEY, redis_conn, request, seed_backup};
use proto_types::{keys, record};
use testkit::RedisServer;

const ADMIN: &str = "admin-key-1";
const USER: &str = "u@example.com";

async fn setup() -> (RedisServer, Api) {
    let redis = RedisServer::start().unwrap();
    let mut config = common::config(&redis);
    let admin = api::Config::for_tests(&redis.url(), &[KEY, ADMIN]);
    config.keys = admin.keys;
    config.admin_keys = api::Config::for_tests(&redis.url(), &[ADMIN]).keys;
    (redis, Api::start(config).await)
}

async fn create(api: &Api, key: &str, user: &str, restore_from: &str) -> common::Resp {
    let body = format!(r#"{{"user_id":"{user}","restore_from":"{restore_from}"}}"#);
    let headers = [("x-api-key", key), ("content-type", "application/json")];
    request(api.addr, "POST", "/session/create", &headers, Some(body.as_bytes())).await
}

fn set_state(redis: &RedisServer, id: &str, state: &str) {
    let _: () = redis::cmd("HSET")
        .arg(keys::backup(id))
        .arg(record::backup::STATE)
        .arg(state)
        .query(&mut redis_conn(redis))
        .unwrap();
}

/// Every key in the store: a refused create must not add one.
/// Every key but the rate limiter's buckets (each expires a few ms after a request, so
/// whether one is still there depends on timing, not on what was written).
fn all_keys(redis: &RedisServer) -> Vec<String> {
    let mut k: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis_conn(redis)).unwrap();
    k.retain(|key| !key.starts_with("sm:rl:"));
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_foreign_deleted_and_failed_backups_are_refused_and_create_nothing() {
    let (redis, api) = setup().await;
    seed_backup(&redis, "mine-g2", "mine", USER, 1_763_643_920_001, 7);
    seed_backup(&redis, "theirs-g2", "theirs", "other@example.com", 1_763_643_920_002, 7);
    seed_backup(&redis, "gone-g2", "gone", USER, 1_763_643_920_003, 7);
    seed_backup(&redis, "failed-g2", "failed", USER, 1_763_643_920_004, 0);
    set_state(&redis, "failed-g2", record::backup::STATE_FAILED);
    assert_eq!(api.delete("/backups/gone-g2").await.status, 200);
    let before = all_keys(&redis);

    let unknown = create(&api, KEY, USER, "nope-g1").await;
    assert_eq!(unknown.error(404), "backup_not_found");
    // Another user's backup answers exactly like a missing one: 404, so a
    // key cannot probe which backup ids exist.
    let theirs = create(&api, KEY, USER, "theirs-g2").await;
    assert_eq!(theirs.error(404), "backup_not_found");
    assert_eq!(theirs.json()["error"]["message"], "backup theirs-g2 not found");
    assert_eq!(create(&api, KEY, USER, "gone-g2").await.error(410), "backup_deleted");
    let failed = create(&api, KEY, USER, "failed-g2").await;
    assert_eq!(failed.error(409), "backup_not_restorable");
    assert!(failed.json()["error"]["message"].as_str().unwrap().contains("failed"));
    assert_eq!(create(&api, KEY, USER, "Bad_Id").await.error(400), "invalid_backup_id");

    assert_eq!(all_keys(&redis), before, "no session, job, stream entry or index was written");
    let listed = api.get("/sessions?user_id=u%40example.com").await.json();
    assert_eq!(listed["count"], 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_restores_their_backup_and_only_an_admin_key_restores_anyones() {
    let (redis, api) = setup().await;
    seed_backup(&redis, "mine-g2", "mine", USER, 1_763_643_920_001, 5_242_880);
    seed_backup(&redis, "theirs-g2", "theirs", "other@example.com", 1_763_643_920_002, 9);

    let made = create(&api, KEY, USER, "mine-g2").await;
    assert_eq!(made.status, 202, "{}", String::from_utf8_lossy(&made.body));
    let uuid = made.json()["uuid"].as_str().unwrap().to_owned();
    let status = api.get(&format!("/session/{uuid}")).await.json();
    assert_eq!(status["restore_from"], "mine-g2");
    let sk = keys::session(&uuid);
    let field =
        |f: &str| -> Option<String> { redis::cmd("HGET").arg(&sk).arg(f).query(&mut redis_conn(&redis)).unwrap() };
    assert_eq!(field(record::session::RESTORE_LOCATION).as_deref(), Some("app-mine-20251120-130829.zip"));
    assert_eq!(field(record::session::RESTORE_SIZE_BYTES).as_deref(), Some("5242880"));
    assert_eq!(field(record::session::RESTORE_SHA256).as_deref(), Some(common::SHA));

    // A fresh session says so too (another user: the per-user limit is not what this tests).
    let fresh = api.create("fresh@example.com").await.json();
    let fresh = api.get(&format!("/session/{}", fresh["uuid"].as_str().unwrap())).await.json();
    assert_eq!(fresh["restore_from"], serde_json::Value::Null);

    assert_eq!(create(&api, KEY, USER, "theirs-g2").await.error(404), "backup_not_found");
    let admin = create(&api, ADMIN, "admin-made@example.com", "theirs-g2").await;
    assert_eq!(admin.status, 202, "{}", String::from_utf8_lossy(&admin.body));
    let uuid = admin.json()["uuid"].as_str().unwrap().to_owned();
    let status = api.get(&format!("/session/{uuid}")).await.json();
    assert_eq!(
        (status["restore_from"].as_str(), status["session"]["user_id"].as_str()),
        (Some("theirs-g2"), Some("admin-made@example.com"))
    );
    // Even an admin cannot restore what is gone.
    assert_eq!(create(&api, ADMIN, USER, "nope-g1").await.error(404), "backup_not_found");
    api.stop().await;
}
