//! Input validation: the body cap, the JSON content type, strict JSON
//! bodies (unknown fields refused), `user_id`, `Idempotency-Key` and the
//! `/sessions` query. Every refusal is a typed [`ApiError`] (400, 413, 415).
//!
//! `user_id`: 1 to 254 characters, each an ASCII letter or digit or one of
//! `. _ - @ + :` (enough for e-mail addresses and `provider:id` forms; no
//! spaces, braces or control characters, since it becomes part of a Redis key).

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;

/// Longest accepted `user_id`.
pub const USER_ID_MAX: usize = 254;
/// Longest accepted `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
/// Default and largest page size of `GET /sessions`.
pub const PAGE_DEFAULT: usize = 50;
/// Largest page size of `GET /sessions`.
pub const PAGE_MAX: usize = 100;

/// Body of `POST /session/create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Owner of the new session.
    pub user_id: String,
    /// The session's own idle timeout, seconds (absent: the worker's `IDLE_SLEEP_AFTER`).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// A backup whose files the new session starts with.
    #[serde(default)]
    pub restore_from: Option<String>,
}

/// Longest backup id accepted (a session id, `-g` and a generation).
const BACKUP_ID_MAX: usize = 64;

/// A backup id: 1 to 64 of `a-z`, `0-9` and `-`, or 400 `invalid_backup_id`.
pub fn backup_id(id: &str) -> Result<&str, ApiError> {
    let ok = !id.is_empty()
        && id.len() <= BACKUP_ID_MAX
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(ApiError::bad_request("invalid_backup_id", "backup_id must be 1 to 64 of a-z, 0-9 and '-'"))
    }
}

/// Body of `POST /session/{uuid}/activity`: empty, or a new idle timeout.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityBody {
    /// The session's new idle timeout, seconds.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

/// An idle timeout within `1..=max` seconds, or 400 `invalid_idle_timeout`.
pub fn idle_timeout(secs: Option<u64>, max: u64) -> Result<Option<u64>, ApiError> {
    match secs {
        Some(s) if s == 0 || s > max => Err(ApiError::bad_request(
            "invalid_idle_timeout",
            format!("idle_timeout_secs must be between 1 and {max} (MAX_IDLE_TIMEOUT)"),
        )),
        other => Ok(other),
    }
}

/// Body of the other commands: empty, or an empty JSON object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// Reads the whole body, refusing more than `max` bytes with 413.
pub async fn read_body<B>(headers: &HeaderMap, body: B, max: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge { max });
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge { max }),
        Err(_) => Err(ApiError::bad_request("unreadable_body", "the request body could not be read")),
    }
}

/// Requires `Content-Type: application/json` (parameters such as `charset` allowed).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if ok { Ok(()) } else { Err(ApiError::UnsupportedMediaType) }
}

/// Parses a strict JSON body.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also accept a struct written as an array; only objects are bodies.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown field") {
            ApiError::bad_request("unknown_field", msg)
        } else if e.is_data() || msg.starts_with("missing field") {
            ApiError::bad_request("invalid_body", msg)
        } else {
            ApiError::bad_request("invalid_json", format!("malformed JSON: {msg}"))
        }
    })
}

/// The body of a command other than create: nothing, or `{}` as JSON.
pub fn parse_empty(headers: &HeaderMap, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    require_json(headers)?;
    parse_json::<EmptyBody>(bytes).map(|_| ())
}

/// Validates a `user_id`.
pub fn user_id(s: &str) -> Result<&str, ApiError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+' | ':');
    if s.is_empty() || s.chars().count() > USER_ID_MAX || !s.chars().all(ok_char) {
        return Err(ApiError::bad_request(
            "invalid_user_id",
            format!("user_id must be 1 to {USER_ID_MAX} characters: letters, digits and . _ - @ + :"),
        ));
    }
    Ok(s)
}

/// The `Idempotency-Key` header, if present and valid.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let b = v.as_bytes();
    if b.is_empty() || b.len() > IDEMPOTENCY_KEY_MAX || !b.iter().all(|c| (0x21..=0x7e).contains(c)) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(b).into_owned()))
}

/// The incoming W3C `traceparent` / `tracestate`, if well-formed, so the
/// worker's job span can join the caller's trace.
pub fn trace_context(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let get = |name: &str, max: usize| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= max && v.bytes().all(|b| (0x20..=0x7e).contains(&b)))
            .map(str::to_owned)
    };
    let parent = get("traceparent", 55).filter(|p| {
        let parts: Vec<&str> = p.split('-').collect();
        parts.len() == 4
            && [2, 32, 16, 2].iter().zip(&parts).all(|(n, s)| s.len() == *n && s.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    let state = parent.as_ref().and_then(|_| get("tracestate", 512));
    (parent, state)
}

/// Fingerprint of a request for idempotency: method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The query of `GET /sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this user's sessions.
    pub user_id: Option<String>,
    /// Resume after this `(created_ms, id)`.
    pub cursor: Option<(u64, String)>,
    /// Page size.
    pub limit: usize,
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses the `/sessions` query; unknown parameters are refused.
pub fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let bad = |code: &'static str, m: &str| ApiError::bad_request(code, m.to_owned());
    let mut q = ListQuery { limit: PAGE_DEFAULT, ..ListQuery::default() };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| bad("invalid_query", "query is not valid percent-encoded UTF-8"))?;
        match k {
            "user_id" => q.user_id = Some(user_id(&v)?.to_owned()),
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX).contains(n))
                    .ok_or_else(|| bad("invalid_limit", "limit must be an integer from 1 to 100"))?
            }
            "cursor" => {
                let parsed = v.split_once(':').and_then(|(s, id)| Some((s.parse::<u64>().ok()?, id.to_owned())));
                q.cursor = Some(parsed.ok_or_else(|| bad("invalid_cursor", "cursor is not one this api issued"))?);
            }
            _ => {
                return Err(bad("unknown_parameter", "unknown query parameter; allowed: user_id, cursor, limit"));
            }
        }
    }
    Ok(q)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn user_ids() {
        assert!(user_id("user@example.com").is_ok());
        assert!(user_id("github:1234+tag").is_ok());
        for bad in ["", "a b", "{sm}", "ü", "tab\t", &"a".repeat(255)] {
            assert!(user_id(bad).is_err(), "{bad:?}");
        }
        assert!(user_id(&"a".repeat(254)).is_ok());
    }

    #[test]
    fn json_errors_are_classified() {
        let e = parse_json::<CreateBody>(br#"{"user_id":"a","admin":true}"#).unwrap_err();
        assert_eq!(e.code(), "unknown_field");
        assert_eq!(parse_json::<CreateBody>(b"{").unwrap_err().code(), "invalid_json");
        assert_eq!(parse_json::<CreateBody>(br#"["user_id"]"#).unwrap_err().code(), "invalid_body");
        assert_eq!(parse_json::<EmptyBody>(b"[]").unwrap_err().code(), "invalid_body");
        assert_eq!(parse_json::<CreateBody>(br#"{"user_id":"a","user_id":"b"}"#).unwrap_err().code(), "invalid_body");
        assert_eq!(parse_json::<CreateBody>(br#"{"user_id":1e999}"#).unwrap_err().status(), 400);
        let deep = "[".repeat(10_000);
        assert_eq!(parse_json::<CreateBody>(deep.as_bytes()).unwrap_err().status(), 400);
    }

    #[test]
    fn content_type() {
        let mut h = HeaderMap::new();
        assert!(require_json(&h).is_err());
        h.insert("content-type", HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert!(require_json(&h).is_ok());
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        assert!(require_json(&h).is_err());
        assert!(parse_empty(&h, b"").is_ok());
        assert!(parse_empty(&h, b"{}").is_err());
    }

    #[test]
    fn trace_context_only_when_well_formed() {
        let mut h = HeaderMap::new();
        assert_eq!(trace_context(&h), (None, None));
        h.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        h.insert("tracestate", HeaderValue::from_static("vendor=1"));
        assert_eq!(trace_context(&h).1.as_deref(), Some("vendor=1"));
        h.insert("traceparent", HeaderValue::from_static("00-nothex-00f067aa0ba902b7-01"));
        assert_eq!(trace_context(&h), (None, None));
    }

    #[test]
    fn list_queries() {
        let q = list_query(Some("user_id=u%40example.com&limit=2&cursor=17:abc")).unwrap();
        assert_eq!(q.user_id.as_deref(), Some("u@example.com"));
        assert_eq!(q.limit, 2);
        assert_eq!(q.cursor, Some((17, "abc".to_owned())));
        assert_eq!(list_query(None).unwrap().limit, PAGE_DEFAULT);
        assert!(list_query(Some("limit=0")).is_err());
        assert!(list_query(Some("cursor=x")).is_err());
        assert!(list_query(Some("evil=1")).is_err());
        assert!(list_query(Some("user_id=%ff")).is_err());
    }
}
