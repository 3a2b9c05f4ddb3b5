//! Identifiers: [`SessionId`] and [`JobId`].
//!
//! A session id becomes part of Kubernetes object names (`ws-{id}`) and of
//! the workspace host (`vs-code-{id}.…`), so it must be a valid DNS label
//! and short enough that every derived name stays under 63 characters. It is
//! validated once, on parse; holding a `SessionId` means it is safe.
//!
//! New ids are 8 lowercase hex characters, like the old system's, but any
//! DNS-label string of 1 to [`SessionId::MAX_LEN`] characters is accepted so
//! old sessions keep working. Random bytes come from the caller: this crate
//! has no source of randomness.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("id is empty")]
    Empty,
    /// The string was longer than allowed.
    #[error("id is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Length found.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error(
        "id may contain only lowercase letters a-z, digits 0-9 and '-', and must start and end with a letter or digit"
    )]
    BadCharacter,
}

/// A validated session id: a DNS label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`) of
/// at most [`SessionId::MAX_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// Longest accepted id. `vs-code-` plus the id, and `backup-` plus the
    /// id plus a 16-character suffix, both stay inside the 63-character
    /// DNS label limit.
    pub const MAX_LEN: usize = 40;

    /// Parses and validates an id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { len: s.len(), max: Self::MAX_LEN });
        }
        let bytes = s.as_bytes();
        let ok_inner = bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        let ok_edges = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let (first, last) = (bytes[0], bytes[bytes.len() - 1]);
        if !ok_inner || !ok_edges(first) || !ok_edges(last) {
            return Err(IdError::BadCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// A new id from four random bytes: 8 lowercase hex characters, the old
    /// system's format.
    pub fn from_random(bytes: [u8; 4]) -> Self {
        Self(hex(&bytes))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SessionId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

/// A job id: 32 lowercase hex characters (a random 128-bit value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Length of every job id.
    pub const LEN: usize = 32;

    /// Parses and validates a job id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() != Self::LEN {
            return Err(IdError::TooLong { len: s.len(), max: Self::LEN });
        }
        if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(IdError::BadCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// A new job id from 16 random bytes.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(hex(&bytes))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for JobId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for JobId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.0
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_old_and_new_formats() {
        for ok in ["0fa6debc", "a", "abc-123", "x".repeat(40).as_str()] {
            assert!(SessionId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_would() {
        let cases: &[(&str, IdError)] = &[
            ("", IdError::Empty),
            ("ABC", IdError::BadCharacter),
            ("-abc", IdError::BadCharacter),
            ("abc-", IdError::BadCharacter),
            ("a_b", IdError::BadCharacter),
            ("a.b", IdError::BadCharacter),
            ("ü", IdError::BadCharacter),
            ("a/../b", IdError::BadCharacter),
        ];
        for (s, want) in cases {
            assert_eq!(SessionId::parse(s).as_ref().err(), Some(want), "{s:?}");
        }
        assert!(matches!(SessionId::parse(&"a".repeat(41)), Err(IdError::TooLong { len: 41, max: 40 })));
    }

    #[test]
    fn random_ids_are_valid_and_old_shaped() {
        let id = SessionId::from_random([0x0f, 0xa6, 0xde, 0xbc]);
        assert_eq!(id.as_str(), "0fa6debc");
        assert_eq!(SessionId::parse(id.as_str()), Ok(id));
        let job = JobId::from_random([0xab; 16]);
        assert_eq!(job.as_str().len(), 32);
        assert_eq!(JobId::parse(job.as_str()), Ok(job));
        assert!(JobId::parse("xyz").is_err());
        assert!(JobId::parse(&"g".repeat(32)).is_err());
    }

    #[test]
    fn serde_validates() {
        let bad: Result<SessionId, _> = rmp_serde::from_slice(&rmp_serde::to_vec("BAD!").expect("encode"));
        assert!(bad.is_err());
    }
}
