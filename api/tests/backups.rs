//! The backup endpoints against a real redis-server, with records written
//! as the worker's finish script writes them. Every answer is also checked
//! against `openapi.json` (by `common::request`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{SHA, redis_conn, seed_backup, seed_session, setup};
use proto_types::{keys, record::backup as field};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_backups_are_listed_page_by_page_with_size_and_checksum() {
    let (redis, api) = setup().await;
    seed_backup(&redis, "aaa-g2", "aaa", "u@example.com", 1_763_643_920_001, 5_242_880);
    seed_backup(&redis, "bbb-g3", "bbb", "u@example.com", 1_763_643_920_002, 10);
    seed_backup(&redis, "ccc-g2", "ccc", "u@example.com", 1_763_643_920_002, 11);
    seed_backup(&redis, "ddd-g2", "ddd", "other@example.com", 1_763_643_920_003, 12);

    let first = api.get("/backups?user_id=u%40example.com&limit=2").await;
    assert_eq!(first.status, 200);
    let v = first.json();
    assert_eq!(v["count"], 2);
    let b = &v["backups"][0];
    assert_eq!(b["id"], "aaa-g2");
    assert_eq!(b["uuid"], "aaa");
    assert_eq!(b["user_id"], "u@example.com");
    assert_eq!(b["kind"], "archive");
    assert_eq!(b["location"], "app-aaa-20251120-130829.zip");
    assert_eq!(b["size_bytes"], 5_242_880);
    assert_eq!(b["sha256"], SHA);
    assert_eq!(b["state"], "succeeded");
    assert_eq!(b["created_at"], "2025-11-20T13:05:20.001000");
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let rest = api.get(&format!("/backups?user_id=u%40example.com&limit=2&cursor={cursor}")).await.json();
    let ids: Vec<&str> =
        [&v, &rest].iter().flat_map(|p| p["backups"].as_array().unwrap()).map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["aaa-g2", "bbb-g3", "ccc-g2"], "every backup once, same-millisecond ones too; not another user's");
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);

    let none = api.get("/backups?user_id=nobody%40example.com").await;
    assert_eq!((none.status, none.json()["count"].clone()), (200, 0.into()));
    assert_eq!(api.get("/backups").await.error(400), "missing_user_id");
    assert_eq!(api.get("/backups?user_id=u%40example.com&limit=0").await.error(400), "invalid_limit");
    assert_eq!(api.get("/backups?user_id=u%40example.com&x=1").await.error(400), "unknown_parameter");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_by_id_and_unknown_ids_are_404() {
    let (redis, api) = setup().await;
    seed_backup(&redis, "aaa-g2", "aaa", "u@example.com", 1_763_643_920_001, 7);
    let r = api.get("/backups/aaa-g2").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sha256"], SHA);
    assert_eq!(api.get("/backups/zzz-g1").await.error(404), "backup_not_found");
    assert_eq!(api.get("/backups/Not%20One").await.error(400), "invalid_backup_id");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_backups_outlive_its_record() {
    let (redis, api) = setup().await;
    seed_session(&redis, "aaa", "u@example.com", "running", "running", 1);
    let empty = api.get("/session/aaa/backups").await;
    assert_eq!((empty.status, empty.json()["count"].clone()), (200, 0.into()), "a live session without backups");
    seed_backup(&redis, "aaa-g2", "aaa", "u@example.com", 1_763_643_920_001, 7);
    seed_backup(&redis, "aaa-g5", "aaa", "u@example.com", 1_763_643_920_009, 8);
    seed_backup(&redis, "bbb-g2", "bbb", "u@example.com", 1_763_643_920_005, 9);
    // The tombstone expired: the backups are still listed.
    let _: () = redis::cmd("DEL").arg(keys::session("aaa")).query(&mut redis_conn(&redis)).unwrap();
    let v = api.get("/session/aaa/backups").await.json();
    let ids: Vec<&str> = v["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["aaa-g2", "aaa-g5"]);
    assert_eq!(api.get("/session/nope/backups").await.error(404), "session_not_found");
    assert_eq!(api.get("/session/NOPE/backups").await.error(400), "invalid_uuid");
    assert_eq!(api.get("/session/aaa/backups?user_id=u").await.error(400), "unknown_parameter");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_backup_marks_it_deleted_once_and_for_all() {
    let (redis, api) = setup().await;
    seed_backup(&redis, "aaa-g2", "aaa", "u@example.com", 1_763_643_920_001, 7);
    for _ in 0..2 {
        let r = api.delete("/backups/aaa-g2").await;
        assert_eq!(r.status, 200, "deleting again answers the same");
        assert_eq!(r.json()["state"], "deleted");
    }
    assert_eq!(api.get("/backups/aaa-g2").await.json()["state"], "deleted");
    let listed = api.get("/backups?user_id=u%40example.com").await.json();
    assert_eq!(listed["backups"][0]["state"], "deleted", "still listed, marked");
    assert_eq!(api.delete("/backups/zzz-g1").await.error(404), "backup_not_found");
    let exists: bool = redis::cmd("EXISTS").arg(keys::backup("zzz-g1")).query(&mut redis_conn(&redis)).unwrap();
    assert!(!exists, "deleting an unknown backup creates nothing");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_is_listed_with_its_reason() {
    let (redis, api) = setup().await;
    let why = "backup failed, volume kept; delete again to retry: BackoffLimitExceeded";
    let _: () = redis::cmd("HSET")
        .arg(keys::backup("aaa-g2"))
        .arg(field::ID)
        .arg("aaa-g2")
        .arg(field::SESSION)
        .arg("aaa")
        .arg(field::USER)
        .arg("u@example.com")
        .arg(field::CREATED_AT)
        .arg(1_763_643_920_001u64)
        .arg(field::KIND)
        .arg(field::KIND_ARCHIVE)
        .arg(field::LOCATION)
        .arg("app-aaa-20251120-130829.zip")
        .arg(field::SIZE_BYTES)
        .arg(0)
        .arg(field::SHA256)
        .arg("")
        .arg(field::STATE)
        .arg(field::STATE_FAILED)
        .arg(field::ERROR)
        .arg(why)
        .query(&mut redis_conn(&redis))
        .unwrap();
    let b = api.get("/backups/aaa-g2").await.json();
    assert_eq!((b["state"].as_str(), b["error"].as_str(), b["sha256"].as_str()), (Some("failed"), Some(why), Some("")));
    seed_backup(&redis, "bbb-g2", "bbb", "u@example.com", 1_763_643_920_002, 7);
    assert_eq!(api.get("/backups/bbb-g2").await.json()["error"], serde_json::Value::Null);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_backup_is_listed_but_cannot_be_deleted_yet() {
    let (redis, api) = setup().await;
    // As the worker records it right before it creates the backup Job.
    let _: () = redis::cmd("HSET")
        .arg(keys::backup("aaa-g2"))
        .arg(&[
            (field::ID, "aaa-g2"),
            (field::SESSION, "aaa"),
            (field::USER, "u@example.com"),
            (field::CREATED_AT, "1763643920001"),
            (field::KIND, field::KIND_SNAPSHOT),
            (field::LOCATION, ""),
            (field::SIZE_BYTES, "0"),
            (field::SHA256, ""),
            (field::STATE, field::STATE_PENDING),
        ])
        .query(&mut redis_conn(&redis))
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(keys::user_backups("u@example.com"))
        .arg(1)
        .arg("aaa-g2")
        .query(&mut redis_conn(&redis))
        .unwrap();
    let listed = api.get("/backups?user_id=u%40example.com").await.json();
    let b = &listed["backups"][0];
    assert_eq!((b["state"].as_str(), b["kind"].as_str()), (Some("pending"), Some("snapshot")), "{b}");
    let r = api.delete("/backups/aaa-g2").await;
    assert_eq!(r.error(409), "backup_in_progress");
    assert_eq!(api.get("/backups/aaa-g2").await.json()["state"], "pending", "left as it is");
    api.stop().await;
}
