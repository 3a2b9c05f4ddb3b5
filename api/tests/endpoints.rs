//! Every endpoint's success path with the old system's exact fields, and
//! every error with its status and JSON body.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Api, KEY, request, seed_session, setup, stream_len};
use serde_json::Value;

fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn is_old_timestamp(s: &str) -> bool {
    // 2025-11-20T13:05:20.884405
    s.len() == 26 && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.' && !s.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_probes_need_no_key() {
    let (_redis, api) = setup().await;
    let r = request(api.addr, "GET", "/health", &[], None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(keys_of(&v), ["redis", "status", "timestamp", "version"]);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["redis"], "connected");
    assert!(is_old_timestamp(v["timestamp"].as_str().unwrap()));
    assert_eq!(request(api.addr, "GET", "/livez", &[], None).await.status, 200);
    assert_eq!(request(api.addr, "GET", "/readyz", &[], None).await.status, 200);
    let doc = request(api.addr, "GET", "/openapi.json", &[], None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_status_with_the_old_fields() {
    let (redis, api) = setup().await;
    let r = api.create("user@example.com").await;
    assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(
        keys_of(&v),
        ["access_url", "created_at", "job_id", "status", "status_url", "user_id", "uuid", "workspace_url"]
    );
    let uuid = v["uuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 8);
    assert!(uuid.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(v["status"], "created");
    assert_eq!(v["user_id"], "user@example.com");
    assert_eq!(v["workspace_url"], format!("https://vs-code-{uuid}.preview.example.com"));
    assert!(is_old_timestamp(v["created_at"].as_str().unwrap()));
    let job_id = v["job_id"].as_str().unwrap().to_owned();
    assert_eq!(v["status_url"], format!("/jobs/{job_id}"));
    assert_eq!(stream_len(&redis), 1);

    for path in [format!("/session/{uuid}"), format!("/session/{uuid}/status")] {
        let s = api.get(&path).await;
        assert_eq!(s.status, 200);
        let s = s.json();
        for k in ["uuid", "session", "replicas", "queue_length", "timestamp"] {
            assert!(s.get(k).is_some(), "missing {k}");
        }
        assert_eq!(keys_of(&s["session"]), ["created_at", "last_activity", "status", "user_id"]);
        assert_eq!(s["uuid"], uuid.as_str());
        assert_eq!(s["session"]["user_id"], "user@example.com");
        assert_eq!(s["session"]["status"], "creating");
        assert_eq!(s["replicas"], 0);
        assert_eq!(s["queue_length"], 1, "the create job is still queued");
        assert!(is_old_timestamp(s["timestamp"].as_str().unwrap()));
        assert!(is_old_timestamp(s["session"]["last_activity"].as_str().unwrap()));
    }

    let j = api.get(&format!("/jobs/{job_id}")).await;
    assert_eq!(j.status, 200);
    let j = j.json();
    assert_eq!(j["state"], "queued");
    assert_eq!(j["command"], "create");
    assert_eq!(j["uuid"], uuid.as_str());
    assert_eq!(j["attempts"], 0);
    assert_eq!(j["error"], Value::Null);
    assert_eq!(j["queue_position"], 1);
    assert_eq!(j["finished_at"], Value::Null);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_the_old_words() {
    let (redis, api) = setup().await;
    seed_session(&redis, "0fa6debc", "u@example.com", "running", "running", 1);
    let cases = [
        ("sleep", "sleep", "sleeping"),
        ("wake", "wake", "waking"),
        ("scale-up", "scale_up", "success"),
        ("scale-down", "scale_down", "success"),
    ];
    for (path, action, status) in cases {
        let r = api.post(&format!("/session/0fa6debc/{path}"), None).await;
        assert_eq!(r.status, 202, "{path}: {:?}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(keys_of(&v), ["action", "job_id", "message", "status", "status_url", "uuid"]);
        assert_eq!(v["uuid"], "0fa6debc");
        assert_eq!(v["action"], action);
        assert_eq!(v["status"], status);
    }
    // An empty JSON object is accepted as a body too.
    assert_eq!(api.post("/session/0fa6debc/sleep", Some("{}")).await.status, 202);
    let d = api.delete("/session/0fa6debc").await;
    assert_eq!(d.status, 202);
    let v = d.json();
    assert_eq!(keys_of(&v), ["job_id", "message", "status", "status_url", "uuid"]);
    assert_eq!(v["status"], "terminating");
    let job = api.get(v["status_url"].as_str().unwrap()).await.json();
    assert_eq!(job["command"], "delete");
    assert_eq!(job["session_status"], "terminating");
    assert_eq!(job["queue_position"], 6, "five commands were queued before it");
    assert_eq!(stream_len(&redis), 6);
    let s = api.get("/session/0fa6debc").await.json();
    assert_eq!(s["session"]["status"], "deleting");
    assert_eq!(s["desired"], "deleted");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_position_counts_only_undelivered_entries() {
    let (redis, api) = setup().await;
    let first = api.create("a@example.com").await.json()["job_id"].as_str().unwrap().to_owned();
    let second = api.create("b@example.com").await.json()["job_id"].as_str().unwrap().to_owned();
    assert_eq!(api.get(&format!("/jobs/{second}")).await.json()["queue_position"], 2);
    // A worker group that has read the first entry.
    let mut c = common::redis_conn(&redis);
    let _: () = redis::cmd("XGROUP").arg("CREATE").arg("{sm}:jobs").arg("workers").arg("0").query(&mut c).unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("w1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("{sm}:jobs")
        .arg(">")
        .query(&mut c)
        .unwrap();
    assert_eq!(api.get(&format!("/jobs/{second}")).await.json()["queue_position"], 1);
    assert_eq!(api.get(&format!("/jobs/{first}")).await.json()["queue_position"], 0);
    // Once the worker marks it running, no position is reported.
    let _: () =
        redis::cmd("HSET").arg(format!("{{sm}}:job:{first}")).arg("state").arg("running").query(&mut c).unwrap();
    assert_eq!(api.get(&format!("/jobs/{first}")).await.json()["queue_position"], Value::Null);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_sessions_pages_and_filters() {
    let (redis, api) = setup().await;
    for (i, user) in ["a@x.io", "b@x.io", "a@x.io", "a@x.io", "c@x.io"].iter().enumerate() {
        seed_session(&redis, &format!("s{i}"), user, "running", "running", 1);
    }
    let p1 = api.get("/sessions?limit=2").await;
    assert_eq!(p1.status, 200);
    let p1 = p1.json();
    assert_eq!(p1["count"], 2);
    let ids: Vec<&str> = p1["sessions"].as_array().unwrap().iter().map(|s| s["uuid"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s0", "s1"]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = api.get(&format!("/sessions?limit=2&cursor={cursor}")).await.json();
    let ids: Vec<&str> = p2["sessions"].as_array().unwrap().iter().map(|s| s["uuid"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s2", "s3"]);
    let mine = api.get("/sessions?user_id=a%40x.io").await.json();
    let ids: Vec<&str> = mine["sessions"].as_array().unwrap().iter().map(|s| s["uuid"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s0", "s2", "s3"]);
    assert_eq!(mine["next_cursor"], Value::Null);
    assert_eq!(api.get("/sessions?limit=500").await.error(400), "invalid_limit");
    assert_eq!(api.get("/sessions?cursor=zzz").await.error(400), "invalid_cursor");
    assert_eq!(api.get("/sessions?admin=1").await.error(400), "unknown_parameter");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_errors_and_key_rotation() {
    let redis = testkit::RedisServer::start().unwrap();
    let mut cfg = common::config(&redis);
    cfg.keys = api::http::auth::KeySet::new(["old-key", "new-key"]);
    let api = Api::start(cfg).await;
    let missing = request(api.addr, "GET", "/sessions", &[], None).await;
    assert_eq!(missing.error(401), "missing_api_key");
    let wrong = request(api.addr, "GET", "/sessions", &[("x-api-key", "nope")], None).await;
    assert_eq!(wrong.error(401), "invalid_api_key");
    for k in ["old-key", "new-key"] {
        assert_eq!(request(api.addr, "GET", "/sessions", &[("x-api-key", k)], None).await.status, 200);
    }
    let bearer = request(api.addr, "GET", "/metrics", &[("authorization", "Bearer new-key")], None).await;
    assert_eq!(bearer.status, 200);
    assert!(String::from_utf8_lossy(&bearer.body).contains("session_api_http_requests_total"));
    api.stop().await;
    // Rotation done: the old key is removed from the configuration.
    let mut cfg = common::config(&redis);
    cfg.keys = api::http::auth::KeySet::new(["new-key"]);
    let api = Api::start(cfg).await;
    assert_eq!(
        request(api.addr, "GET", "/sessions", &[("x-api-key", "old-key")], None).await.error(401),
        "invalid_api_key"
    );
    assert_eq!(request(api.addr, "GET", "/sessions", &[("x-api-key", "new-key")], None).await.status, 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_errors() {
    let (redis, api) = setup().await;
    let a = api.addr;
    let h = |ct: &'static str| vec![("x-api-key", KEY), ("content-type", ct)];
    assert_eq!(request(a, "GET", "/nope", &[], None).await.error(404), "not_found");
    let r = request(a, "PUT", "/session/abc", &[("x-api-key", KEY)], None).await;
    assert_eq!(r.error(405), "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, DELETE"));
    let r = request(a, "GET", "/session/create/sleep", &[("x-api-key", KEY)], None).await;
    assert_eq!(r.header("allow"), Some("POST"));
    let big = format!(r#"{{"user_id":"{}"}}"#, "a".repeat(20_000));
    assert_eq!(
        request(a, "POST", "/session/create", &h("application/json"), Some(big.as_bytes())).await.error(413),
        "payload_too_large"
    );
    let body = br#"{"user_id":"u"}"#;
    assert_eq!(
        request(a, "POST", "/session/create", &h("text/plain"), Some(body)).await.error(415),
        "unsupported_media_type"
    );
    assert_eq!(
        request(a, "POST", "/session/create", &[("x-api-key", KEY)], Some(body)).await.error(415),
        "unsupported_media_type"
    );
    assert_eq!(api.post("/session/create", Some(r#"{"user_id":"u","admin":true}"#)).await.error(400), "unknown_field");
    assert_eq!(api.post("/session/create", Some("{nope")).await.error(400), "invalid_json");
    assert_eq!(api.post("/session/create", Some("{}")).await.error(400), "invalid_body");
    for bad in ["", "has space", "semi;colon", "{sm}"] {
        let body = serde_json::json!({ "user_id": bad }).to_string();
        assert_eq!(api.post("/session/create", Some(&body)).await.error(400), "invalid_user_id", "{bad:?}");
    }
    let long = serde_json::json!({ "user_id": "a".repeat(255) }).to_string();
    assert_eq!(api.post("/session/create", Some(&long)).await.error(400), "invalid_user_id");
    assert_eq!(api.get("/session/NOT_VALID").await.error(400), "invalid_uuid");
    assert_eq!(api.post("/session/Bad.Id/wake", None).await.error(400), "invalid_uuid");
    assert_eq!(api.get("/jobs/xyz").await.error(400), "invalid_job_id");
    assert_eq!(api.get("/session/abc12345").await.error(404), "session_not_found");
    assert_eq!(api.post("/session/abc12345/wake", None).await.error(404), "session_not_found");
    assert_eq!(api.get(&format!("/jobs/{}", "0".repeat(32))).await.error(404), "job_not_found");
    seed_session(&redis, "abc", "u", "running", "running", 1);
    assert_eq!(api.post("/session/abc/wake", Some(r#"{"x":1}"#)).await.error(400), "unknown_field");
    let r = request(a, "POST", "/session/abc/wake", &h("text/plain"), Some(b"hello")).await;
    assert_eq!(r.error(415), "unsupported_media_type");
    assert_eq!(stream_len(&redis), 0, "nothing refused reaches the stream");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_machine_refusals_name_the_state() {
    let (redis, api) = setup().await;
    seed_session(&redis, "gone", "u", "deleted", "deleted", 5);
    seed_session(&redis, "leaving", "u", "deleting", "deleted", 3);
    seed_session(&redis, "broken", "u", "failed", "deleted", 3);
    for (id, cmd, state) in [
        ("gone", "wake", "deleted"),
        ("gone", "sleep", "deleted"),
        ("leaving", "scale-up", "deleting"),
        ("broken", "wake", "failed"),
    ] {
        let r = api.post(&format!("/session/{id}/{cmd}"), None).await;
        assert_eq!(r.error(409), "invalid_state");
        assert_eq!(r.json()["error"]["current_state"], state);
    }
    // Repeating what is already desired converges instead of failing.
    assert_eq!(api.delete("/session/gone").await.status, 202);
    assert_eq!(api.delete("/session/broken").await.status, 202);
    assert_eq!(stream_len(&redis), 2);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limit() {
    let (redis, api) = setup().await;
    for _ in 0..3 {
        assert_eq!(api.create("busy@example.com").await.status, 202);
    }
    let r = api.create("busy@example.com").await;
    assert_eq!(r.error(409), "session_limit_reached");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("limit is 3"));
    assert_eq!(api.create("other@example.com").await.status, 202);
    assert_eq!(stream_len(&redis), 4);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys() {
    let (redis, api) = setup().await;
    let h = [("x-api-key", KEY), ("content-type", "application/json"), ("idempotency-key", "req-1")];
    let body = br#"{"user_id":"idem@example.com"}"#;
    let first = request(api.addr, "POST", "/session/create", &h, Some(body)).await;
    assert_eq!(first.status, 202);
    let again = request(api.addr, "POST", "/session/create", &h, Some(body)).await;
    assert_eq!(again.status, 200);
    // The replay is the original job's response, with a fresh access link
    // (links are single use: the first one may have been spent).
    let without_link = |mut v: Value| {
        let link = v.as_object_mut().unwrap().remove("access_url").unwrap();
        (v, link)
    };
    let ((replayed, link2), (original, link1)) = (without_link(again.json()), without_link(first.json()));
    assert_eq!(replayed, original, "the replay is the original job's response");
    assert_ne!(link2, link1, "a replay carries a fresh access link");
    let other = br#"{"user_id":"someone@example.com"}"#;
    let r = request(api.addr, "POST", "/session/create", &h, Some(other)).await;
    assert_eq!(r.error(422), "idempotency_key_reused");
    assert_eq!(r.json()["error"]["job_id"], first.json()["job_id"]);
    assert_eq!(stream_len(&redis), 1);
    // Commands too; and the same key under another API key is another client's.
    let uuid = first.json()["uuid"].as_str().unwrap().to_owned();
    let hs = [("x-api-key", KEY), ("idempotency-key", "sleep-1")];
    let s1 = request(api.addr, "POST", &format!("/session/{uuid}/sleep"), &hs, None).await;
    let s2 = request(api.addr, "POST", &format!("/session/{uuid}/sleep"), &hs, None).await;
    assert_eq!((s1.status, s2.status), (202, 200));
    assert_eq!(s1.json()["job_id"], s2.json()["job_id"]);
    let w = request(api.addr, "POST", &format!("/session/{uuid}/wake"), &hs, None).await;
    assert_eq!(w.error(422), "idempotency_key_reused");
    let bad = [("x-api-key", KEY), ("idempotency-key", "has space")];
    assert_eq!(
        request(api.addr, "POST", &format!("/session/{uuid}/sleep"), &bad, None).await.error(400),
        "invalid_idempotency_key"
    );
    let ttl: i64 = redis::cmd("TTL").arg("{sm}:idem:".to_owned()).query(&mut common::redis_conn(&redis)).unwrap();
    assert_eq!(ttl, -2);
    let keys: Vec<String> = redis::cmd("KEYS").arg("{sm}:idem:*").query(&mut common::redis_conn(&redis)).unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        let ttl: i64 = redis::cmd("TTL").arg(&k).query(&mut common::redis_conn(&redis)).unwrap();
        assert!(ttl > 23 * 3600 && ttl <= 24 * 3600, "{k}: {ttl}");
        assert!(!k.contains(KEY), "the raw API key never reaches Redis");
    }
    assert_eq!(stream_len(&redis), 2);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_job_carries_the_callers_trace_context() {
    let (redis, api) = setup().await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let h = [("x-api-key", KEY), ("content-type", "application/json"), ("traceparent", tp)];
    let r = request(api.addr, "POST", "/session/create", &h, Some(br#"{"user_id":"t@example.com"}"#)).await;
    assert_eq!(r.status, 202);
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> =
        redis::cmd("XRANGE").arg("{sm}:jobs").arg("-").arg("+").query(&mut common::redis_conn(&redis)).unwrap();
    let payload = &entries[0].1[0].1;
    let job = proto_types::Job::decode(payload).unwrap();
    assert_eq!(job.traceparent.as_deref(), Some(tp));
    assert_eq!(job.job_id.as_str(), r.json()["job_id"].as_str().unwrap());
    assert_eq!(job.generation, 1);
    api.stop().await;
}

/// Racing commands on one session all land, each on its own generation:
/// the enqueue script's compare-and-set plus re-decide never loses or
/// duplicates a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_commands_get_distinct_generations() {
    let (redis, api) = setup().await;
    seed_session(&redis, "race", "u", "running", "running", 1);
    let addr = api.addr;
    let mut tasks = Vec::new();
    // At most ENQUEUE_ATTEMPTS racers: each conflict means another racer won, so all fit.
    for i in 0..api::store::ENQUEUE_ATTEMPTS {
        let cmd = if i % 2 == 0 { "sleep" } else { "wake" };
        tasks.push(tokio::spawn(async move {
            request(addr, "POST", &format!("/session/race/{cmd}"), &[("x-api-key", KEY)], None).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> =
        redis::cmd("XRANGE").arg("{sm}:jobs").arg("-").arg("+").query(&mut common::redis_conn(&redis)).unwrap();
    let mut generations: Vec<u64> =
        entries.iter().map(|(_, f)| proto_types::Job::decode(&f[0].1).unwrap().generation).collect();
    generations.sort_unstable();
    assert_eq!(generations, (2..=9).collect::<Vec<u64>>());
    let g: u64 =
        redis::cmd("HGET").arg("{sm}:session:race").arg("generation").query(&mut common::redis_conn(&redis)).unwrap();
    assert_eq!(g, 9);
    api.stop().await;
}

/// Issue 12, from fuzzing the OpenAPI document: `create` is never taken for a
/// session id, an empty cursor and a non-visible Idempotency-Key are refused
/// as the document says, and a session shows its generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_gaps_found_by_fuzzing_are_closed() {
    let (_redis, api) = setup().await;
    let a = api.addr;
    for method in ["OPTIONS", "GET", "DELETE"] {
        let r = request(a, method, "/session/create", &[("x-api-key", KEY)], None).await;
        assert_eq!(r.error(405), "method_not_allowed", "{method}");
        assert_eq!(r.header("allow"), Some("POST"), "{method}");
    }
    assert_eq!(request(a, "GET", "/sessions?cursor=", &[("x-api-key", KEY)], None).await.error(400), "invalid_cursor");
    let headers = [("x-api-key", KEY), ("content-type", "application/json"), ("idempotency-key", "has space")];
    let r = request(a, "POST", "/session/create", &headers, Some(br#"{"user_id":"g@example.com"}"#)).await;
    assert_eq!(r.status, 400);

    let v = api.create("g@example.com").await.json();
    let uuid = v["uuid"].as_str().unwrap().to_owned();
    let first = api.get(&format!("/session/{uuid}")).await.json()["generation"].as_u64().unwrap();
    assert_eq!(api.post(&format!("/session/{uuid}/sleep"), None).await.status, 202);
    let second = api.get(&format!("/session/{uuid}")).await.json()["generation"].as_u64().unwrap();
    assert_eq!(second, first + 1, "every accepted command moves the generation on");
    api.stop().await;
}
