//! The gateway's configuration: clap flags / env ([`GatewayArgs`]) validated
//! once into a typed [`GatewayConfig`]. Shared settings (`REDIS_URL`,
//! `WORKSPACE_URL_PATTERN`, `TRUSTED_PROXIES`, `LOG_FORMAT`) keep the api's
//! names and flags, so one environment configures both binaries.
//!
//! Tests parse with [`GatewayArgs::try_parse_from`], never the process
//! environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::access::{Keys, KeysError};
use crate::config::LogFormat;
use crate::gateway::host::{Pattern, PatternError};
use crate::http::net::{Cidr, CidrError, parse_cidrs};

/// Session-manager gateway: authenticated reverse proxy in front of every
/// workspace; wakes sleeping sessions on access and records activity.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version)]
pub struct GatewayArgs {
    /// Address to listen on (workspace traffic, `/livez`, `/readyz`, `/metrics`).
    #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
    /// Redis URL (`redis://[:password@]host:port/db`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/", hide_env_values = true)]
    pub redis_url: String,
    /// Workspace URL pattern; `{uuid}` is the session id. The Host of a request picks the session.
    #[arg(long, env = "WORKSPACE_URL_PATTERN", default_value = "http://{uuid}.ws.localhost:8081")]
    pub workspace_url_pattern: String,
    /// How requests are authenticated: `token` (access links and a cookie), `header`, or `none`.
    #[arg(long, env = "WORKSPACE_AUTH", value_enum, default_value_t = AuthMode::Token)]
    pub workspace_auth: AuthMode,
    /// Access-link keys `id:secret[,id:secret...]`; the first signs, all verify (rotation).
    #[arg(long, env = "ACCESS_KEYS", default_value = "", hide_env_values = true, hide_default_value = true)]
    pub access_keys: String,
    /// Identity header set by a forward-auth proxy (`WORKSPACE_AUTH=header`).
    #[arg(long, env = "AUTH_HEADER", default_value = "x-auth-request-user")]
    pub auth_header: String,
    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` (and identity header) is believed.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Seconds a workspace cookie stays valid.
    #[arg(long, env = "COOKIE_TTL", default_value_t = 12 * 3600)]
    pub cookie_ttl: u64,
    /// Seconds a request to a waking workspace is held before 503.
    #[arg(long, env = "WAKE_HOLD_TIMEOUT", default_value_t = 60)]
    pub wake_hold_timeout: u64,
    /// Milliseconds to connect to a workspace.
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT_MS", default_value_t = 3000)]
    pub upstream_connect_timeout_ms: u64,
    /// Seconds to wait for a workspace's response head.
    #[arg(long, env = "UPSTREAM_READ_TIMEOUT", default_value_t = 60)]
    pub upstream_read_timeout: u64,
    /// Milliseconds a session's record is cached.
    #[arg(long, env = "SESSION_CACHE_MS", default_value_t = 1000)]
    pub session_cache_ms: u64,
    /// Milliseconds between activity flushes to Redis.
    #[arg(long, env = "ACTIVITY_FLUSH_MS", default_value_t = 5000)]
    pub activity_flush_ms: u64,
    /// Concurrent HTTP client connections served (more wait in the listen backlog); an upgraded WebSocket leaves the count.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 16384)]
    pub max_connections: usize,
    /// Seconds open requests and WebSockets get to finish after SIGTERM.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", default_value_t = 25)]
    pub shutdown_grace: u64,
    /// Log line format: `text` for humans, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How the gateway authenticates requests: the api's `WORKSPACE_AUTH`
/// (one variable, one set of values, for both binaries).
pub use crate::config::WorkspaceAuth as AuthMode;

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Listen address (used by `main`; `serve` takes a bound listener).
    pub addr: SocketAddr,
    /// Redis URL.
    pub redis_url: String,
    /// Workspace URL pattern.
    pub pattern: Pattern,
    /// Authentication mode.
    pub auth: AuthMode,
    /// Access keys (`None` only when `auth` is not `token`).
    pub keys: Option<Keys>,
    /// Identity header name, lower case.
    pub auth_header: String,
    /// Trusted proxies.
    pub trusted_proxies: Vec<Cidr>,
    /// Cookie lifetime.
    pub cookie_ttl: Duration,
    /// Hold bound while waking.
    pub wake_hold_timeout: Duration,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream response-head timeout.
    pub read_timeout: Duration,
    /// Session cache lifetime.
    pub session_cache: Duration,
    /// Activity flush interval.
    pub activity_flush: Duration,
    /// Connection cap.
    pub max_connections: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    /// `ACCESS_KEYS` is unusable (or empty in token mode).
    #[error("ACCESS_KEYS: {0}")]
    Keys(#[from] KeysError),
    /// The pattern is unusable.
    #[error("WORKSPACE_URL_PATTERN: {0}")]
    Pattern(#[from] PatternError),
    /// A trusted proxy entry is not a network.
    #[error("TRUSTED_PROXIES: {0}")]
    TrustedProxies(#[from] CidrError),
    /// Header mode with nobody to trust.
    #[error("WORKSPACE_AUTH=header needs TRUSTED_PROXIES")]
    NoTrustedProxy,
    /// The identity header name is not a header name.
    #[error("AUTH_HEADER {0:?} is not a header name")]
    Header(String),
    /// The Redis URL does not parse.
    #[error("REDIS_URL is not a valid redis URL: {0}")]
    RedisUrl(String),
    /// A numeric setting is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl GatewayArgs {
    /// Validates into a [`GatewayConfig`].
    pub fn into_config(self) -> Result<GatewayConfig, GatewayConfigError> {
        let keys = match (self.workspace_auth, self.access_keys.trim().is_empty()) {
            (AuthMode::Token, _) | (_, false) => Some(Keys::parse(&self.access_keys)?),
            _ => None,
        };
        let trusted_proxies = parse_cidrs(&self.trusted_proxies)?;
        if self.workspace_auth == AuthMode::Header && trusted_proxies.is_empty() {
            return Err(GatewayConfigError::NoTrustedProxy);
        }
        let auth_header = self.auth_header.trim().to_ascii_lowercase();
        if http::HeaderName::from_bytes(auth_header.as_bytes()).is_err() {
            return Err(GatewayConfigError::Header(self.auth_header));
        }
        redis::Client::open(self.redis_url.as_str()).map_err(|e| GatewayConfigError::RedisUrl(e.to_string()))?;
        for (name, v) in [
            ("COOKIE_TTL", self.cookie_ttl),
            ("WAKE_HOLD_TIMEOUT", self.wake_hold_timeout),
            ("UPSTREAM_CONNECT_TIMEOUT_MS", self.upstream_connect_timeout_ms),
            ("UPSTREAM_READ_TIMEOUT", self.upstream_read_timeout),
            ("ACTIVITY_FLUSH_MS", self.activity_flush_ms),
            ("GATEWAY_MAX_CONNECTIONS", self.max_connections as u64),
        ] {
            if v == 0 {
                return Err(GatewayConfigError::Zero(name));
            }
        }
        Ok(GatewayConfig {
            addr: self.addr,
            redis_url: self.redis_url,
            pattern: Pattern::parse(&self.workspace_url_pattern)?,
            auth: self.workspace_auth,
            keys,
            auth_header,
            trusted_proxies,
            cookie_ttl: Duration::from_secs(self.cookie_ttl),
            wake_hold_timeout: Duration::from_secs(self.wake_hold_timeout),
            connect_timeout: Duration::from_millis(self.upstream_connect_timeout_ms),
            read_timeout: Duration::from_secs(self.upstream_read_timeout),
            session_cache: Duration::from_millis(self.session_cache_ms),
            activity_flush: Duration::from_millis(self.activity_flush_ms),
            max_connections: self.max_connections,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEYS: &str = "k1:0123456789abcdef0123456789abcdef";

    fn parse(extra: &[&str]) -> Result<GatewayConfig, GatewayConfigError> {
        let mut argv = vec!["gateway"];
        argv.extend_from_slice(extra);
        GatewayArgs::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn token_mode_needs_keys_other_modes_do_not() {
        assert!(matches!(parse(&[]), Err(GatewayConfigError::Keys(KeysError::Empty))));
        let c = parse(&["--access-keys", KEYS]).unwrap();
        assert_eq!(c.auth, AuthMode::Token);
        assert_eq!(c.pattern.origin_for("abc"), "http://abc.ws.localhost:8081");
        assert!(parse(&["--workspace-auth", "none"]).unwrap().keys.is_none());
        assert!(matches!(parse(&["--workspace-auth", "header"]), Err(GatewayConfigError::NoTrustedProxy)));
        assert!(parse(&["--workspace-auth", "header", "--trusted-proxies", "10.0.0.0/8"]).is_ok());
    }

    #[test]
    fn bad_values() {
        assert!(matches!(
            parse(&["--access-keys", KEYS, "--workspace-url-pattern", "http://x"]),
            Err(GatewayConfigError::Pattern(_))
        ));
        assert!(matches!(
            parse(&["--access-keys", KEYS, "--wake-hold-timeout", "0"]),
            Err(GatewayConfigError::Zero(_))
        ));
        assert!(matches!(
            parse(&["--access-keys", KEYS, "--redis-url", "http://x"]),
            Err(GatewayConfigError::RedisUrl(_))
        ));
    }
}
