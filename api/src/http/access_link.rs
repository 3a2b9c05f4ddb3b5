//! Issuing workspace access links: `POST /session/{uuid}/access` and the
//! `access_url` of a create. The token format and its check are
//! [`crate::access`] (pure, shared with the gateway); this module adds the
//! nonce (16 random bytes, hex), the expiry and the URL, and nothing else:
//! it never reads or writes Redis (the gateway records the nonce when the
//! link is used).
//!
//! With `WORKSPACE_AUTH=none` or `header` no token is needed, so the link
//! is the plain workspace URL.

use crate::config::{Config, WorkspaceAuth};
use crate::http::error::ApiError;

/// The query parameter the gateway reads the token from.
pub const TOKEN_PARAM: &str = "sm_token";

/// An issued link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The workspace URL with the token.
    pub url: String,
    /// When the token expires, ms since the epoch.
    pub expires_ms: u64,
}

/// A fresh link to `workspace_url` for `session`, valid from `now_ms` for
/// the configured lifetime.
pub fn issue(config: &Config, session: &str, workspace_url: &str, now_ms: u64) -> Result<Link, ApiError> {
    let ttl_ms = u64::try_from(config.access_link_ttl.as_millis()).unwrap_or(u64::MAX);
    let expires_ms = now_ms.saturating_add(ttl_ms);
    let keys = match (config.workspace_auth, &config.access_keys) {
        (WorkspaceAuth::Token, Some(keys)) => keys,
        // Config validation guarantees keys in token mode.
        (WorkspaceAuth::Token, None) => return Err(ApiError::Internal),
        (WorkspaceAuth::None | WorkspaceAuth::Header, _) => {
            return Ok(Link { url: workspace_url.to_owned(), expires_ms });
        }
    };
    let nonce = nonce().map_err(|e| {
        tracing::error!(error = %e, "no randomness for an access-link nonce");
        ApiError::Internal
    })?;
    let token = keys.sign(session, expires_ms, &nonce);
    Ok(Link { url: with_token(workspace_url, &token), expires_ms })
}

/// 16 random bytes, lowercase hex.
fn nonce() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `url` with `sm_token=token` added to its query (tokens need no escaping:
/// they are letters, digits, `.`, `-` and `_`); a bare origin gets its `/`
/// path first, so the link is the URL a browser would show.
pub fn with_token(url: &str, token: &str) -> String {
    let (base, fragment) = url.split_once('#').map_or((url, None), |(b, f)| (b, Some(f)));
    let bare_origin = base.split_once("://").is_some_and(|(_, rest)| !rest.contains(['/', '?']));
    let base = if bare_origin { format!("{base}/") } else { base.to_owned() };
    let sep = if base.contains('?') { '&' } else { '?' };
    match fragment {
        Some(f) => format!("{base}{sep}{TOKEN_PARAM}={token}#{f}"),
        None => format!("{base}{sep}{TOKEN_PARAM}={token}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_into_the_query() {
        assert_eq!(with_token("https://a.example.com", "t"), "https://a.example.com/?sm_token=t");
        assert_eq!(with_token("http://abc.ws.localhost:8081", "t"), "http://abc.ws.localhost:8081/?sm_token=t");
        assert_eq!(with_token("https://a.example.com/?x=1", "t"), "https://a.example.com/?x=1&sm_token=t");
        assert_eq!(with_token("https://a.example.com/#f", "t"), "https://a.example.com/?sm_token=t#f");
    }

    #[test]
    fn nonces_are_16_random_bytes_in_hex() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
