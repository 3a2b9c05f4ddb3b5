//! The shared rate limit, HTTP side: which buckets a request is charged to
//! (its client IP, and its API key when valid), the 429 and the
//! `RateLimit-*` headers. The buckets themselves and their script are the
//! store's ([`crate::store::gcra`]): both are checked in one round trip.
//!
//! When Redis is unreachable the limiter **fails open** (the request goes
//! on, a metric counts it): every endpoint that could be abused needs Redis
//! anyway and answers 503 on its own, so failing closed would only turn the
//! health endpoints into a second outage.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use proto_types::{SessionId, keys};

use crate::http::auth::KeyId;
use crate::http::error::ApiError;
use crate::http::response::HttpResponse;
use crate::http::state::AppState;
use crate::store::Prefetched;
use crate::store::gcra::{Bucket, Verdict, tightest};

/// Adds `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
pub fn apply_headers(verdict: &Verdict, headers: &mut HeaderMap) {
    headers.insert("ratelimit-limit", HeaderValue::from(verdict.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(verdict.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(verdict.reset_ms.div_ceil(1000)));
}

/// What the limiter let through: the tightest verdict (for the headers)
/// and the session it read along, if asked to.
pub type Passed = (Option<Verdict>, Option<Prefetched>);

/// Checks the IP bucket and, with a valid key, the key bucket (reading
/// `session` in the same round trip). `Err` is the 429 to send; no verdict
/// when limits are off or Redis failed (fail open).
pub async fn check(
    state: &Arc<AppState>,
    ip: &str,
    key: Option<&KeyId>,
    session: Option<&SessionId>,
) -> Result<Passed, HttpResponse> {
    let cfg = &state.config;
    let mut buckets = Vec::with_capacity(2);
    if cfg.rate_per_ip > 0 {
        buckets.push(Bucket { key: keys::rate_limit("ip", ip), limit: cfg.rate_per_ip, scope: "ip" });
    }
    if let (Some(k), true) = (key, cfg.rate_per_key > 0) {
        buckets.push(Bucket { key: keys::rate_limit("key", &k.0), limit: cfg.rate_per_key, scope: "key" });
    }
    if buckets.is_empty() {
        return Ok((None, None));
    }
    let checked = match session {
        Some(id) => state.store.rate_limit_and_session(&buckets, id).await,
        None => state.store.rate_limit(&buckets).await.map(|v| (v, None)),
    };
    let (verdicts, prefetched) = match checked {
        Ok(v) => v,
        Err(e) => {
            state.metrics.limiter_error();
            tracing::warn!(error = %e, "rate limiter unavailable; failing open");
            return Ok((None, None));
        }
    };
    for (b, v) in buckets.iter().zip(&verdicts) {
        if !v.allowed {
            state.metrics.rate_limited(b.scope);
        }
    }
    match tightest(&verdicts) {
        Some(v) if !v.allowed => {
            let mut resp = ApiError::RateLimited { retry_after_secs: v.retry_after_secs() }.into_response();
            apply_headers(&v, resp.headers_mut());
            Err(resp)
        }
        other => Ok((other, prefetched)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        let v = Verdict { allowed: true, limit: 100, remaining: 7, reset_ms: 1_200, retry_after_ms: 0 };
        apply_headers(&v, &mut h);
        assert_eq!(h["ratelimit-limit"], "100");
        assert_eq!(h["ratelimit-remaining"], "7");
        assert_eq!(h["ratelimit-reset"], "2");
    }
}
