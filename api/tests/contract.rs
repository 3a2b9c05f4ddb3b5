//! The conformance check itself: the served document is the checked one,
//! every schema in it compiles, and answers that depart from it (an extra
//! field, a missing one, a wrong status word, an undocumented status or
//! header, a missing `Retry-After`) are caught, so the check run on every
//! integration-test response cannot silently pass.
#![allow(clippy::unwrap_used)]

mod common;

use common::contract::{Contract, DOCUMENT, contract};
use common::{Resp, request, setup};
use serde_json::{Value, json};

fn resp(status: u16, headers: &[(&str, &str)], body: &Value) -> Resp {
    let mut h: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Resp { status, headers: h, body: serde_json::to_vec(body).unwrap() }
}

fn action() -> Value {
    json!({
        "uuid": "0fa6debc", "action": "sleep", "status": "sleeping", "message": "Pod queued for sleep",
        "job_id": "0123456789abcdef0123456789abcdef", "status_url": "/jobs/0123456789abcdef0123456789abcdef"
    })
}

fn violations(method: &str, path: &str, r: &Resp) -> Vec<String> {
    contract().violations(method, path, r)
}

#[test]
fn a_conforming_answer_passes() {
    let r =
        resp(202, &[("ratelimit-limit", "100"), ("ratelimit-remaining", "99"), ("ratelimit-reset", "1")], &action());
    assert_eq!(violations("POST", "/session/0fa6debc/sleep", &r), Vec::<String>::new());
}

#[test]
fn wrong_bodies_fail_the_check() {
    let path = "/session/0fa6debc/sleep";
    let mut extra = action();
    extra["admin"] = json!(true);
    let mut missing = action();
    missing.as_object_mut().unwrap().remove("job_id");
    let mut word = action();
    word["status"] = json!("asleep");
    let mut kind = action();
    kind["uuid"] = json!(12);
    let mut bad_url = action();
    bad_url["status_url"] = json!("/jobs/nope");
    for (what, body) in [("extra", extra), ("missing", missing), ("word", word), ("kind", kind), ("url", bad_url)] {
        let v = violations("POST", path, &resp(202, &[], &body));
        assert!(!v.is_empty(), "a body with a {what} field passed");
    }
    // Not JSON at all, or another content type.
    let mut r = resp(202, &[], &action());
    r.body = b"{not json".to_vec();
    assert!(!violations("POST", path, &r).is_empty());
    let mut r = resp(202, &[], &action());
    r.headers[0].1 = "text/html".into();
    assert!(!violations("POST", path, &r).is_empty());
}

#[test]
fn error_bodies_must_have_the_documented_shape_and_codes() {
    let ok = json!({"error": {"code": "invalid_uuid", "message": "bad"}});
    assert!(violations("GET", "/session/X", &resp(400, &[], &ok)).is_empty());
    for bad in [
        json!({"error": {"code": "invalid_uuid"}}),
        json!({"error": {"code": "invalid_uuid", "message": ""}}),
        json!({"error": {"code": "teapot", "message": "bad"}}),
        json!({"error": {"code": "invalid_uuid", "message": "bad", "current_state": "running"}}),
        json!({"error": "invalid_uuid"}),
        json!({"code": "invalid_uuid", "message": "bad"}),
        json!({"error": {"code": "invalid_uuid", "message": "bad"}, "detail": 1}),
    ] {
        assert!(!violations("GET", "/session/X", &resp(400, &[], &bad)).is_empty(), "{bad} passed");
    }
    // invalid_state names the state; the limit refusal does not.
    let p = "/session/abc/wake";
    let state = json!({"error": {"code": "invalid_state", "message": "m", "current_state": "deleted"}});
    assert!(violations("POST", p, &resp(409, &[], &state)).is_empty());
    let no_state = json!({"error": {"code": "invalid_state", "message": "m"}});
    assert!(!violations("POST", p, &resp(409, &[], &no_state)).is_empty());
    let odd_state = json!({"error": {"code": "invalid_state", "message": "m", "current_state": "asleep"}});
    assert!(!violations("POST", p, &resp(409, &[], &odd_state)).is_empty());
    // Codes are per operation: a job lookup never answers invalid_uuid, create never invalid_state.
    let uuid = json!({"error": {"code": "invalid_uuid", "message": "bad"}});
    assert!(!violations("GET", "/jobs/xyz", &resp(400, &[], &uuid)).is_empty());
    assert!(!violations("POST", "/session/create", &resp(409, &[], &state)).is_empty());
    // 422 carries the original job.
    let reused = json!({"error": {"code": "idempotency_key_reused", "message": "m"}});
    assert!(!violations("POST", p, &resp(422, &[], &reused)).is_empty());
}

#[test]
fn statuses_headers_and_paths_must_be_documented() {
    let health = json!({"status": "healthy", "version": "0.1.0", "redis": "connected",
        "timestamp": "2025-11-20T13:05:20.884405"});
    assert!(violations("GET", "/health", &resp(200, &[], &health)).is_empty());
    // An undocumented status.
    assert!(!violations("GET", "/health", &resp(418, &[], &health)).is_empty());
    // The old timestamp format only.
    let mut zulu = health.clone();
    zulu["timestamp"] = json!("2025-11-20T13:05:20Z");
    assert!(!violations("GET", "/health", &resp(200, &[], &zulu)).is_empty());
    // Probes are not rate-limited, so RateLimit headers there are undocumented.
    assert!(!violations("GET", "/health", &resp(200, &[("ratelimit-limit", "1")], &health)).is_empty());
    // 429 needs Retry-After and RateLimit-*; values must be integers.
    let limited = json!({"error": {"code": "rate_limited", "message": "slow down"}});
    let full =
        [("retry-after", "3"), ("ratelimit-limit", "4"), ("ratelimit-remaining", "0"), ("ratelimit-reset", "15")];
    assert!(violations("GET", "/sessions", &resp(429, &full, &limited)).is_empty());
    assert!(!violations("GET", "/sessions", &resp(429, &full[1..], &limited)).is_empty());
    let mut nan = full;
    nan[0].1 = "soon";
    assert!(!violations("GET", "/sessions", &resp(429, &nan, &limited)).is_empty());
    // Unknown paths: only the documented 404; wrong methods: 405 with Allow.
    let nf = json!({"error": {"code": "not_found", "message": "no route"}});
    assert!(violations("GET", "/nope", &resp(404, &[], &nf)).is_empty());
    assert!(!violations("GET", "/nope", &resp(200, &[], &health)).is_empty());
    let mna = json!({"error": {"code": "method_not_allowed", "message": "no"}});
    assert!(violations("PUT", "/session/abc", &resp(405, &[("allow", "GET, DELETE")], &mna)).is_empty());
    assert!(!violations("PUT", "/session/abc", &resp(405, &[], &mna)).is_empty());
    // Literal segments win: POST /session/create is Create, and GET /session/create is no session read.
    let created = json!({"uuid": "0fa6debc", "user_id": "u", "status": "created",
        "workspace_url": "https://vs-code-0fa6debc.preview.example.com",
        "access_url": "https://vs-code-0fa6debc.preview.example.com?sm_token=v1.k.1.00.00",
        "created_at": "2025-11-20T13:05:20.884405",
        "job_id": "0123456789abcdef0123456789abcdef", "status_url": "/jobs/0123456789abcdef0123456789abcdef"});
    assert!(violations("POST", "/session/create", &resp(202, &[], &created)).is_empty());
    assert!(!violations("GET", "/session/create", &resp(202, &[], &created)).is_empty());
    assert!(violations("GET", "/session/create", &resp(405, &[("allow", "POST")], &mna)).is_empty());
}

/// Every schema the check could be asked to use compiles, and every `$ref`
/// in the document resolves: a typo in the document fails here rather than
/// only when a test happens to hit that response.
#[test]
fn every_response_schema_compiles() {
    let c = contract();
    let doc = c.doc();
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in &refs {
        let ptr = r.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(doc.pointer(ptr).is_some(), "dangling $ref {r}");
    }
    assert!(refs.len() > 50, "the document shares its schemas through refs");
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                // An empty body is never a valid answer of ours: the schema is exercised.
                let r = Resp {
                    status: status.parse().unwrap(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: b"{}".to_vec(),
                };
                let concrete = path.replace("{uuid}", "abc").replace("{job_id}", "0");
                let v = c.violations(method, &concrete, &r);
                assert!(v.iter().all(|e| !e.contains("does not compile")), "{method} {path} {status}: {v:?}");
                if !path.starts_with("/metrics") && !path.starts_with("/openapi") {
                    assert!(!v.is_empty(), "{method} {path} {status} accepts an empty object");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The served document is byte for byte the one the check uses, and a
/// tampered document (one field dropped from a schema) makes real answers fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_checked_one() {
    let (_redis, api) = setup().await;
    let served = request(api.addr, "GET", "/openapi.json", &[], None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body, DOCUMENT.as_bytes());
    let created = api.create("doc@example.com").await;
    assert_eq!(created.status, 202);
    let mut doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    doc["components"]["schemas"]["Created"]["properties"].as_object_mut().unwrap().remove("status_url");
    let tampered = Contract::new(doc);
    let v = tampered.violations("POST", "/session/create", &created);
    assert!(v.iter().any(|e| e.contains("status_url")), "{v:?}");
    api.stop().await;
}
