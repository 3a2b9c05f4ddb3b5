//! The per-session lease scripts: only one worker acts on a session at a
//! time.
//!
//! A lease is the string `{sm}:lease:{id}` = `"<token> <owner>"` with a TTL.
//! Acquiring takes a fresh fencing token from `INCR {sm}:fence`; renewing
//! and releasing only succeed while the stored value is still exactly the
//! holder's (compare-and-set, compare-and-delete), so a holder whose lease
//! expired cannot extend or delete its successor's. The token also travels
//! with every session-record write ([`super::finish`]): a write carrying a
//! token lower than the record's `fence` field is refused, so a stale
//! worker that lost its lease cannot overwrite newer state.

use super::{Invocation, ReplyError};
use crate::keys;

/// Source of the acquire script.
pub const ACQUIRE_SOURCE: &str = include_str!("lease_acquire.lua");
/// Source of the renew script.
pub const RENEW_SOURCE: &str = include_str!("lease_renew.lua");
/// Source of the release script.
pub const RELEASE_SOURCE: &str = include_str!("lease_release.lua");

/// A held lease: what renew and release must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The session it covers.
    pub session_id: String,
    /// Its holder (unique per consumer and job).
    pub owner: String,
    /// The fencing token issued at acquire.
    pub token: u64,
}

impl Lease {
    /// The stored value, `"<token> <owner>"`.
    pub fn value(&self) -> String {
        format!("{} {}", self.token, self.owner)
    }

    /// Keys and arguments of the renew script.
    pub fn renew(&self, ttl_ms: u64) -> Invocation {
        Invocation {
            keys: vec![keys::lease(&self.session_id)],
            args: vec![self.value().into_bytes(), ttl_ms.to_string().into_bytes()],
        }
    }

    /// Keys and arguments of the release script.
    pub fn release(&self) -> Invocation {
        Invocation { keys: vec![keys::lease(&self.session_id)], args: vec![self.value().into_bytes()] }
    }
}

/// Arguments of the acquire script.
#[derive(Debug, Clone)]
pub struct Acquire<'a> {
    /// The session to lease.
    pub session_id: &'a str,
    /// Who asks; must not contain a space.
    pub owner: &'a str,
    /// Lease time to live in ms.
    pub ttl_ms: u64,
}

impl Acquire<'_> {
    /// Keys and arguments, in the order `lease_acquire.lua` documents.
    pub fn invocation(&self) -> Invocation {
        Invocation {
            keys: vec![keys::lease(self.session_id), keys::FENCE_COUNTER.to_owned()],
            args: vec![self.owner.as_bytes().to_vec(), self.ttl_ms.to_string().into_bytes()],
        }
    }
}

/// What the acquire script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireReply {
    /// The caller holds the lease with this fencing token.
    Acquired {
        /// Fencing token.
        token: u64,
    },
    /// Someone else holds it.
    Held {
        /// The current holder.
        owner: String,
        /// Its remaining time to live in ms.
        ttl_ms: i64,
    },
}

impl AcquireReply {
    /// Parses the acquire script's reply.
    pub fn parse(reply: &[String]) -> Result<Self, ReplyError> {
        let err = || ReplyError::new("lease acquire", reply);
        match reply {
            [tag, token] if tag == "acquired" => Ok(Self::Acquired { token: token.parse().map_err(|_| err())? }),
            [tag, owner, ttl] if tag == "held" => {
                Ok(Self::Held { owner: owner.clone(), ttl_ms: ttl.parse().map_err(|_| err())? })
            }
            _ => Err(err()),
        }
    }
}

/// Parses the renew or release script's reply: `true` when the caller still
/// held the lease (renewed / released), `false` when it was lost.
pub fn parse_held(reply: &[String]) -> Result<bool, ReplyError> {
    match reply {
        [tag] if tag == "renewed" || tag == "released" => Ok(true),
        [tag] if tag == "lost" => Ok(false),
        _ => Err(ReplyError::new("lease renew/release", reply)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_replies() {
        assert_eq!(AcquireReply::parse(&s(&["acquired", "12"])), Ok(AcquireReply::Acquired { token: 12 }));
        assert_eq!(
            AcquireReply::parse(&s(&["held", "w1:1-0", "900"])),
            Ok(AcquireReply::Held { owner: "w1:1-0".into(), ttl_ms: 900 })
        );
        assert!(AcquireReply::parse(&s(&["acquired", "x"])).is_err());
        assert_eq!(parse_held(&s(&["renewed"])), Ok(true));
        assert_eq!(parse_held(&s(&["released"])), Ok(true));
        assert_eq!(parse_held(&s(&["lost"])), Ok(false));
        assert!(parse_held(&s(&[])).is_err());
    }

    #[test]
    fn value_is_token_then_owner() {
        let lease = Lease { session_id: "abc".into(), owner: "w1:1-0".into(), token: 3 };
        assert_eq!(lease.value(), "3 w1:1-0");
        assert_eq!(lease.release().keys, ["{sm}:lease:abc"]);
        let acquire = Acquire { session_id: "abc", owner: "w", ttl_ms: 10 }.invocation();
        assert_eq!(acquire.keys, ["{sm}:lease:abc", "{sm}:fence"]);
    }
}
