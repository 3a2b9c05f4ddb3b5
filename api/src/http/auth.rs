//! API keys: the configured [`KeySet`] (SHA-256 digests only, never the
//! keys themselves) and how a request presents one (`X-API-Key`, the old
//! contract, or `Authorization: Bearer`).
//!
//! Every presented key is hashed and compared against every stored digest
//! in constant time, so neither the comparison nor the number of keys
//! leaks through timing. Several keys are valid at once, which is how keys
//! are rotated: add the new one, move clients, remove the old one.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The key the old system shipped with; refused at start.
pub const OLD_DEFAULT_KEY: &str = "your-secure-api-key-change-in-production";

/// The accepted keys, as SHA-256 digests.
#[derive(Clone)]
pub struct KeySet {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet({} keys)", self.digests.len())
    }
}

/// A short, non-secret id of an accepted key: the first 8 bytes of its
/// digest in hex. Used as the per-key rate-limit bucket and idempotency scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(pub String);

/// What a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// No key at all.
    Missing,
    /// A key that is not configured.
    Wrong,
    /// A valid key.
    Valid(KeyId),
}

fn digest(key: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(key));
    out
}

impl KeySet {
    /// Builds the set from plain keys (trimmed; empty ones ignored).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        let mut digests: Vec<[u8; 32]> =
            keys.into_iter().map(str::trim).filter(|k| !k.is_empty()).map(|k| digest(k.as_bytes())).collect();
        digests.sort_unstable();
        digests.dedup();
        Self { digests }
    }

    /// How many distinct keys are accepted.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks a presented key against every stored digest, in constant time.
    pub fn check(&self, presented: &[u8]) -> Option<KeyId> {
        let d = digest(presented);
        let mut found: Option<KeyId> = None;
        for stored in &self.digests {
            let eq: bool = stored.ct_eq(&d).into();
            if eq {
                found = Some(key_id(stored));
            }
        }
        found
    }

    /// Whether the key `id` names is in this set.
    pub fn contains(&self, id: &KeyId) -> bool {
        self.digests.iter().any(|d| key_id(d) == *id)
    }

    /// Classifies the key a request carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Presented {
        match presented_key(headers) {
            None => Presented::Missing,
            Some(k) => match self.check(k) {
                Some(id) => Presented::Valid(id),
                None => Presented::Wrong,
            },
        }
    }
}

fn key_id(digest: &[u8; 32]) -> KeyId {
    KeyId(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The raw key from `X-API-Key`, else from `Authorization: Bearer <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = auth.split_at(auth.iter().position(|b| *b == b' ')?);
    if scheme.eq_ignore_ascii_case(b"bearer") { Some(rest.trim_ascii()) } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn several_keys_and_both_headers() {
        let set = KeySet::new(["old-key", " new-key ", ""]);
        assert_eq!(set.len(), 2);
        let mut h = HeaderMap::new();
        assert_eq!(set.authenticate(&h), Presented::Missing);
        h.insert("x-api-key", HeaderValue::from_static("new-key"));
        assert!(matches!(set.authenticate(&h), Presented::Valid(_)));
        h.insert("x-api-key", HeaderValue::from_static("nope"));
        assert_eq!(set.authenticate(&h), Presented::Wrong);
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer old-key"));
        assert!(matches!(set.authenticate(&h), Presented::Valid(_)));
        h.insert("authorization", HeaderValue::from_static("Basic b2xkLWtleQ=="));
        assert_eq!(set.authenticate(&h), Presented::Missing);
    }

    #[test]
    fn key_ids_differ_per_key_and_hide_the_key() {
        let set = KeySet::new(["a", "b"]);
        let (a, b) = (set.check(b"a"), set.check(b"b"));
        assert_ne!(a, b);
        let a = a.map(|k| k.0).unwrap_or_default();
        assert_eq!(a.len(), 16);
        assert!(!a.contains('a') || a != "a");
    }

    #[test]
    fn an_admin_set_knows_its_keys_by_id() {
        let (all, admin) = (KeySet::new(["a", "root"]), KeySet::new(["root"]));
        let (a, root) = (all.check(b"a").expect("a"), all.check(b"root").expect("root"));
        assert!(admin.contains(&root));
        assert!(!admin.contains(&a));
    }
}
