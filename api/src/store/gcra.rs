//! The shared rate limit's Redis side: a GCRA (generic cell rate
//! algorithm) bucket per client IP and per API key, kept in Redis so every
//! api replica enforces one budget. Both buckets are checked in one script
//! call (one round trip, one `EVALSHA`; [`crate::store::Store::rate_limit`]).
//!
//! GCRA stores one number per bucket (the theoretical arrival time) and
//! allows a burst of the whole per-minute budget, then one request every
//! `60 s / limit`. It uses Redis' clock, so replicas need no clock sync.
//!
//! This module builds the script's arguments and interprets its replies.
//! Which buckets a request is charged to, the headers and the 429 are the
//! HTTP layer's (`http::ratelimit`).

use proto_types::scripts::Invocation;

/// Script source.
pub const GCRA_SOURCE: &str = include_str!("lua/gcra.lua");

/// Length of the window the limits are expressed in, in ms.
pub const PERIOD_MS: u64 = 60_000;

/// One bucket to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Redis key (`proto_types::keys::rate_limit`).
    pub key: String,
    /// Requests per minute.
    pub limit: u32,
    /// Metric label: `ip` or `key`.
    pub scope: &'static str,
}

/// The answer for one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The bucket's limit.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
    /// Milliseconds until a request would be accepted (0 when allowed).
    pub retry_after_ms: u64,
}

impl Verdict {
    /// Parses the script reply `{allowed, remaining, reset_ms, retry_after_ms}`.
    pub fn from_reply(limit: u32, reply: &[i64]) -> Option<Self> {
        let [allowed, remaining, reset, retry] = reply else { return None };
        let u = |v: &i64| u64::try_from(*v).unwrap_or(0);
        Some(Self {
            allowed: *allowed == 1,
            limit,
            remaining: u(remaining),
            reset_ms: u(reset),
            retry_after_ms: u(retry),
        })
    }

    /// Whole seconds to wait, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

/// Keys and arguments of one script call for `buckets`: `KEYS` are the
/// bucket keys, `ARGV` the period then each bucket's limit.
pub fn invocation(buckets: &[Bucket]) -> Invocation {
    let mut args = vec![PERIOD_MS.to_string().into_bytes()];
    args.extend(buckets.iter().map(|b| b.limit.to_string().into_bytes()));
    Invocation { keys: buckets.iter().map(|b| b.key.clone()).collect(), args }
}

/// The most restrictive of several verdicts: a refusal first (the longest
/// wait), else the one with the fewest requests left.
pub fn tightest(verdicts: &[Verdict]) -> Option<Verdict> {
    let refused = verdicts.iter().filter(|v| !v.allowed).max_by_key(|v| v.retry_after_ms);
    refused.or_else(|| verdicts.iter().min_by_key(|v| v.remaining)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks_the_tightest() {
        let a = Verdict::from_reply(100, &[1, 40, 36_000, 0]).expect("shape");
        let b = Verdict::from_reply(10, &[1, 3, 42_000, 0]).expect("shape");
        assert_eq!(tightest(&[a, b]), Some(b));
        let c = Verdict::from_reply(10, &[0, 0, 60_000, 5_500]).expect("shape");
        assert_eq!(tightest(&[a, c]), Some(c));
        assert_eq!(c.retry_after_secs(), 6);
        assert!(Verdict::from_reply(1, &[1, 2]).is_none());
    }

    #[test]
    fn invocation_is_the_period_then_one_limit_per_bucket() {
        let b = |key: &str, limit| Bucket { key: key.to_owned(), limit, scope: "ip" };
        let inv = invocation(&[b("a", 10), b("b", 20)]);
        assert_eq!(inv.keys, ["a", "b"]);
        assert_eq!(inv.args, [b"60000".to_vec(), b"10".to_vec(), b"20".to_vec()]);
    }
}
