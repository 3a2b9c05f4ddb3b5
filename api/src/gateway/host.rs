//! Which session a request is for: the `Host` header matched against
//! `WORKSPACE_URL_PATTERN` (`http://{uuid}.ws.localhost:8081`). Also the
//! workspace's own origin (the `Origin` a WebSocket upgrade must carry)
//! and whether cookies get `Secure`. Pure.

use proto_types::SessionId;

/// A parsed workspace URL pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    scheme: String,
    prefix: String,
    suffix: String,
}

/// A pattern that cannot route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Not `http://` or `https://`.
    #[error("must start with http:// or https://")]
    Scheme,
    /// `{uuid}` is not in the host part exactly once.
    #[error("the host part must contain {{uuid}} once")]
    Placeholder,
}

impl Pattern {
    /// Parses `scheme://host-with-{uuid}[:port][/path]`; the path is ignored.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let (scheme, rest) = s.split_once("://").ok_or(PatternError::Scheme)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(PatternError::Scheme);
        }
        let authority = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
        let (prefix, suffix) = authority.split_once("{uuid}").ok_or(PatternError::Placeholder)?;
        if suffix.contains("{uuid}") {
            return Err(PatternError::Placeholder);
        }
        Ok(Self { scheme, prefix: prefix.to_owned(), suffix: suffix.to_owned() })
    }

    /// The session a `Host` header names, if it matches the pattern.
    pub fn session_of(&self, host: &str) -> Option<SessionId> {
        let host = host.trim().to_ascii_lowercase();
        let id = host.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        SessionId::parse(id).ok()
    }

    /// `scheme://host[:port]` of session `id`'s workspace.
    pub fn origin_for(&self, id: &str) -> String {
        format!("{}://{}{id}{}", self.scheme, self.prefix, self.suffix)
    }

    /// Whether workspaces are served over https (cookies get `Secure`).
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_sessions_and_back() {
        let p = Pattern::parse("http://{uuid}.ws.localhost:8081").unwrap();
        assert_eq!(p.session_of("0fa6debc.ws.localhost:8081").unwrap().as_str(), "0fa6debc");
        assert_eq!(p.session_of("0FA6DEBC.WS.localhost:8081").unwrap().as_str(), "0fa6debc");
        assert_eq!(p.session_of("0fa6debc.ws.localhost"), None);
        assert_eq!(p.session_of("evil.com"), None);
        assert_eq!(p.session_of(".ws.localhost:8081"), None);
        assert_eq!(p.session_of("a.b.ws.localhost:8081"), None);
        assert_eq!(p.origin_for("0fa6debc"), "http://0fa6debc.ws.localhost:8081");
        assert!(!p.is_https());
        let s = Pattern::parse("https://vs-code-{uuid}.preview.example.com/x").unwrap();
        assert_eq!(s.session_of("vs-code-ab12.preview.example.com").unwrap().as_str(), "ab12");
        assert!(s.is_https());
        assert_eq!(Pattern::parse("ftp://{uuid}.x"), Err(PatternError::Scheme));
        assert_eq!(Pattern::parse("http://x/{uuid}"), Err(PatternError::Placeholder));
    }
}
