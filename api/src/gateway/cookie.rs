//! The workspace cookie and the access-link exchange, as pure functions:
//! finding the `sm_token` query parameter and the URL without it, signing
//! and checking the gateway's own session cookie, and the `Set-Cookie`
//! line.
//!
//! The cookie value is a token of [`crate::access::Keys`] over the subject
//! `cookie:{session}:{created_at_ms}`, so it is signed with the same keys
//! (rotation included) but can never be replayed as an access link (those
//! sign the bare session id). The session's creation time binds it to one
//! life of the session: a deleted and re-created session with the same id
//! refuses the old cookies. It is host-only (no `Domain`), `HttpOnly`,
//! `SameSite=Lax`, and `Secure` when workspaces are served over https.

use crate::access::{Keys, TokenError};

/// The query parameter carrying an access-link token.
pub const TOKEN_PARAM: &str = "sm_token";
/// The cookie's name.
pub const COOKIE_NAME: &str = "sm_session";

/// The subject a cookie signs.
fn subject(session: &str, created_at_ms: u64) -> String {
    format!("cookie:{session}:{created_at_ms}")
}

/// A fresh cookie value for `session` (in its life `created_at_ms`) that
/// expires at `expires_ms`; `nonce` is fresh random hex.
pub fn sign(keys: &Keys, session: &str, created_at_ms: u64, expires_ms: u64, nonce: &str) -> String {
    keys.sign(&subject(session, created_at_ms), expires_ms, nonce)
}

/// Whether `value` is a live cookie for this life of `session`.
pub fn verify(keys: &Keys, value: &str, session: &str, created_at_ms: u64, now_ms: u64) -> Result<(), TokenError> {
    keys.verify(value, &subject(session, created_at_ms), now_ms).map(|_| ())
}

/// The `Set-Cookie` header value.
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}")
}

/// The value of our cookie in `Cookie` header values, if present.
pub fn find<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, v)| v.trim())
}

/// The `sm_token` of a query string, if any, and the path-and-query with
/// it removed (what the exchange redirects to). Leading slashes collapse to
/// one, so the redirect never leaves the workspace (`//evil.example/`).
pub fn split_token(path: &str, query: Option<&str>) -> (Option<String>, String) {
    let path = format!("/{}", path.trim_start_matches('/'));
    let Some(query) = query else { return (None, path) };
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((TOKEN_PARAM, v)) => {
                token = Some(v.to_owned());
                false
            }
            _ => *pair != TOKEN_PARAM && !pair.is_empty(),
        })
        .collect();
    let target = if rest.is_empty() { path } else { format!("{path}?{}", rest.join("&")) };
    (token, target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn a_cookie_is_bound_to_one_life_of_one_session() {
        let keys = Keys::parse("a:0123456789abcdef0123456789abcdef").unwrap();
        let c = sign(&keys, "abc", 5, 100, NONCE);
        assert_eq!(verify(&keys, &c, "abc", 5, 99), Ok(()));
        assert_eq!(verify(&keys, &c, "abc", 6, 99), Err(TokenError::BadSignature));
        assert_eq!(verify(&keys, &c, "abd", 5, 99), Err(TokenError::BadSignature));
        assert_eq!(verify(&keys, &c, "abc", 5, 100), Err(TokenError::Expired));
        // An access link for the session is not a cookie, and the reverse.
        let link = keys.sign("abc", 100, NONCE);
        assert!(verify(&keys, &link, "abc", 5, 0).is_err());
        assert!(keys.verify(&c, "abc", 0).is_err());
    }

    #[test]
    fn set_cookie_is_host_only() {
        let line = set_cookie("v", 60, true);
        assert_eq!(line, "sm_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure");
        assert!(!line.to_ascii_lowercase().contains("domain"));
        assert!(!set_cookie("v", 60, false).contains("Secure"));
    }

    #[test]
    fn finds_the_cookie_and_strips_the_token() {
        assert_eq!(find(["a=1; sm_session=xyz", "b=2"].into_iter()), Some("xyz"));
        assert_eq!(find(["a=1"].into_iter()), None);
        assert_eq!(split_token("/p", Some("sm_token=t&x=1")), (Some("t".into()), "/p?x=1".into()));
        assert_eq!(split_token("/", Some("sm_token=t")), (Some("t".into()), "/".into()));
        assert_eq!(split_token("/", Some("x=1")), (None, "/?x=1".into()));
        assert_eq!(split_token("/", None), (None, "/".into()));
        assert_eq!(split_token("//evil.example/x", Some("sm_token=t")), (Some("t".into()), "/evil.example/x".into()));
    }
}
