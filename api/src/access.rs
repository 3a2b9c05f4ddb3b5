//! Workspace access links: short-lived, single-use tokens the api signs
//! (`POST /session/{uuid}/access`) and the gateway exchanges for a cookie.
//!
//! A token is `v1.{kid}.{expires_ms}.{nonce}.{mac}`: `mac` is
//! HMAC-SHA256 under the key named `kid` over
//! `v1|{session}|{expires_ms}|{nonce}`, hex. The session is not in the
//! token: the gateway knows it from the Host header, so a token for one
//! workspace is worthless on another. The nonce makes it single use: the
//! gateway records it in Redis (`SET NX`) until the expiry.
//!
//! Pure: no clock, no randomness, no I/O. Callers pass `now_ms` and the
//! nonce.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const VERSION: &str = "v1";

/// One signing key: an id (so keys can rotate) and its secret.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The keys in use: the first signs, every one verifies (rotation: add
/// the new key first, keep the old one until its links have expired).
#[derive(Debug, Clone)]
pub struct Keys(Vec<Key>);

/// A key list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// No key at all.
    #[error("no access key given (expected `id:secret`, comma-separated)")]
    Empty,
    /// An entry without `id:`.
    #[error("access key entry {0} is not `id:secret`")]
    Shape(usize),
    /// An id outside `[A-Za-z0-9_-]{1,32}`.
    #[error("access key id {0:?} must be 1-32 characters of A-Z a-z 0-9 _ -")]
    Id(String),
    /// A secret shorter than [`MIN_SECRET_LEN`].
    #[error("access key {0:?} has a secret shorter than {MIN_SECRET_LEN} bytes")]
    Short(String),
    /// Two keys with one id.
    #[error("access key id {0:?} appears twice")]
    Duplicate(String),
}

impl Keys {
    /// Parses `id:secret[,id:secret...]`.
    pub fn parse(s: &str) -> Result<Self, KeysError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, entry) in s.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (id, secret) = entry.split_once(':').ok_or(KeysError::Shape(i + 1))?;
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(KeysError::Id(id.to_owned()));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeysError::Short(id.to_owned()));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(KeysError::Duplicate(id.to_owned()));
            }
            keys.push(Key { id: id.to_owned(), secret: secret.as_bytes().to_vec() });
        }
        if keys.is_empty() {
            return Err(KeysError::Empty);
        }
        Ok(Keys(keys))
    }

    /// Signs a link for `session` that expires at `expires_ms`.
    /// `nonce` must be fresh random hex (16 bytes or more).
    pub fn sign(&self, session: &str, expires_ms: u64, nonce: &str) -> String {
        let key = &self.0[0];
        let mac = mac_hex(&key.secret, session, expires_ms, nonce);
        format!("{VERSION}.{}.{expires_ms}.{nonce}.{mac}", key.id)
    }

    /// Checks `token` for `session` at `now_ms`. On success, returns what
    /// the gateway needs to make it single use.
    pub fn verify(&self, token: &str, session: &str, now_ms: u64) -> Result<Verified, TokenError> {
        let mut parts = token.split('.');
        let (Some(v), Some(kid), Some(exp), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if v != VERSION || nonce.len() < 16 || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        let expires_ms: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let key = self.0.iter().find(|k| k.id == kid).ok_or(TokenError::UnknownKey)?;
        let mac_bytes = from_hex(mac).ok_or(TokenError::Malformed)?;
        let mut m = new_mac(&key.secret);
        feed(&mut m, session, expires_ms, nonce);
        // Constant-time comparison.
        m.verify_slice(&mac_bytes).map_err(|_| TokenError::BadSignature)?;
        if now_ms >= expires_ms {
            return Err(TokenError::Expired);
        }
        Ok(Verified { nonce: nonce.to_owned(), expires_ms })
    }
}

/// A token that checked out: record `nonce` until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The token's nonce.
    pub nonce: String,
    /// Its expiry, milliseconds since the epoch.
    pub expires_ms: u64,
}

/// Why a token was refused. All of them answer 401; the kind is for logs
/// and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("malformed access token")]
    Malformed,
    /// Signed by a key no longer (or never) configured.
    #[error("access token signed by an unknown key")]
    UnknownKey,
    /// Wrong signature: forged, altered, or for another session.
    #[error("access token signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("access token expired")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

fn new_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn feed(m: &mut HmacSha256, session: &str, expires_ms: u64, nonce: &str) {
    m.update(VERSION.as_bytes());
    m.update(b"|");
    m.update(session.as_bytes());
    m.update(b"|");
    m.update(expires_ms.to_string().as_bytes());
    m.update(b"|");
    m.update(nonce.as_bytes());
}

fn mac_hex(secret: &[u8], session: &str, expires_ms: u64, nonce: &str) -> String {
    let mut m = new_mac(secret);
    feed(&mut m, session, expires_ms, nonce);
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a:0123456789abcdef0123456789abcdef";
    const B: &str = "b:fedcba9876543210fedcba9876543210";
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let keys = Keys::parse(A).expect("valid");
        let t = keys.sign("0fa6debc", 1_000, NONCE);
        assert_eq!(keys.verify(&t, "0fa6debc", 999), Ok(Verified { nonce: NONCE.into(), expires_ms: 1_000 }));
        assert_eq!(keys.verify(&t, "0fa6debc", 1_000), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_for_another_session_or_altered_is_refused() {
        let keys = Keys::parse(A).expect("valid");
        let t = keys.sign("0fa6debc", 1_000, NONCE);
        assert_eq!(keys.verify(&t, "0fa6debd", 0), Err(TokenError::BadSignature));
        let later = t.replace(".1000.", ".9000.");
        assert_eq!(keys.verify(&later, "0fa6debc", 0), Err(TokenError::BadSignature));
        for bad in [
            "",
            "v1",
            "v2.a.1000.00112233445566778899aabbccddeeff.00",
            "v1.a.x.00112233445566778899aabbccddeeff.00",
            "v1.a.1.nothex-nothex-nothex.00",
            &format!("{t}.extra"),
        ] {
            assert_eq!(keys.verify(bad, "0fa6debc", 0), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn rotation_old_key_still_verifies_new_key_signs() {
        let old = Keys::parse(A).expect("valid");
        let rotated = Keys::parse(&format!("{B},{A}")).expect("valid");
        let from_old = old.sign("abc", 10, NONCE);
        assert!(rotated.verify(&from_old, "abc", 0).is_ok());
        let from_new = rotated.sign("abc", 10, NONCE);
        assert!(from_new.starts_with("v1.b."));
        assert_eq!(old.verify(&from_new, "abc", 0), Err(TokenError::UnknownKey));
    }

    #[test]
    fn bad_key_lists_are_refused_with_the_reason() {
        assert_eq!(Keys::parse("").expect_err("refused"), KeysError::Empty);
        assert_eq!(Keys::parse("nocolon").expect_err("refused"), KeysError::Shape(1));
        assert_eq!(Keys::parse("a:short").expect_err("refused"), KeysError::Short("a".into()));
        assert_eq!(
            Keys::parse("bad id:0123456789abcdef0123456789abcdef").expect_err("refused"),
            KeysError::Id("bad id".into())
        );
        assert_eq!(Keys::parse(&format!("{A},{A}")).expect_err("refused"), KeysError::Duplicate("a".into()));
        assert!(!format!("{:?}", Keys::parse(A).expect("valid")).contains("0123456789abcdef"));
    }
}
