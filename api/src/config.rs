//! Configuration: the command line / environment ([`Args`], clap derive,
//! every flag with `env=`, a default and a doc comment) validated once into
//! a typed [`Config`]. `main` exits with status 64 and the one-line
//! [`ConfigError`] when validation fails.
//!
//! Parsing never reads the process environment itself in tests: they call
//! [`Args::try_parse_from`] with explicit flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::access::{Keys, KeysError};
use crate::http::auth::{KeySet, OLD_DEFAULT_KEY};
use crate::http::net::{Cidr, CidrError, parse_cidrs};

/// Session-manager api: authenticates, validates, rate-limits and enqueues
/// session commands; answers status from Redis.
#[derive(Debug, Clone, Parser)]
#[command(name = "api", version)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Redis URL (`redis://[:password@]host:port/db`).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/", hide_env_values = true)]
    pub redis_url: String,
    /// Comma-separated API keys; all are accepted (rotation).
    #[arg(long, env = "API_KEYS", default_value = "", hide_env_values = true, hide_default_value = true)]
    pub api_keys: String,
    /// File with more API keys, comma- or newline-separated (`#` starts a comment).
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Comma-separated admin API keys: accepted like API_KEYS, and may also
    /// restore another user's backup (`restore_from`).
    #[arg(long, env = "ADMIN_API_KEYS", default_value = "", hide_env_values = true, hide_default_value = true)]
    pub admin_api_keys: String,
    /// Requests per minute per client IP (0 disables the per-IP limit).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 100)]
    pub rate_limit_per_minute: u32,
    /// Requests per minute per API key (0 disables the per-key limit).
    #[arg(long, env = "RATE_LIMIT_PER_KEY_PER_MINUTE", default_value_t = 1000)]
    pub rate_limit_per_key_per_minute: u32,
    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Workspace URL handed out at create; `{uuid}` is replaced by the session id.
    #[arg(long, env = "WORKSPACE_URL_PATTERN", default_value = "https://vs-code-{uuid}.preview.example.com")]
    pub workspace_url_pattern: String,
    /// Live sessions one user may have (0 = unlimited).
    #[arg(long, env = "MAX_SESSIONS_PER_USER", default_value_t = 3)]
    pub max_sessions_per_user: u32,
    /// Largest `idle_timeout_secs` a session may ask for, in seconds.
    #[arg(long, env = "MAX_IDLE_TIMEOUT", default_value_t = 86_400)]
    pub max_idle_timeout: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,
    /// Concurrent connections served; more wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client may take to send the request headers.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a client may take to send the request body (more: 408).
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value_t = 10)]
    pub body_read_timeout: u64,
    /// Seconds a request (body read included) may take before a 503.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value_t = 15)]
    pub request_timeout: u64,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value_t = 20)]
    pub shutdown_grace: u64,
    /// Milliseconds to wait for one Redis connect or reply.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// Log line format: `text` for humans, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How workspaces are protected: `token` (signed access links, needs ACCESS_KEYS),
    /// `header` (a forward-auth proxy in front) or `none` (open links).
    #[arg(long, env = "WORKSPACE_AUTH", value_enum, default_value_t = WorkspaceAuth::Token)]
    pub workspace_auth: WorkspaceAuth,
    /// Access-link signing keys, `id:secret[,id:secret...]` (secret >= 32 bytes); the first signs.
    #[arg(long, env = "ACCESS_KEYS", default_value = "", hide_env_values = true, hide_default_value = true)]
    pub access_keys: String,
    /// Lifetime of an access link, in seconds (at most 300).
    #[arg(long, env = "ACCESS_LINK_TTL", default_value_t = 300)]
    pub access_link_ttl: u64,
}

/// How workspace URLs are protected (the gateway enforces it; the api
/// hands out the matching links).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkspaceAuth {
    /// Single-use signed links exchanged for a cookie (the default).
    Token,
    /// A forward-auth proxy sets an identity header; links are the plain URL.
    Header,
    /// No authentication; links are the plain URL.
    None,
}

/// The longest access link lifetime accepted, in seconds.
pub const MAX_ACCESS_LINK_TTL_SECS: u64 = 300;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (used by `main`; `serve` takes a bound listener).
    pub addr: SocketAddr,
    /// Redis URL.
    pub redis_url: String,
    /// Accepted keys (the admin keys included).
    pub keys: KeySet,
    /// Admin keys: may restore any user's backup.
    pub admin_keys: KeySet,
    /// Per-IP limit per minute (0 = off).
    pub rate_per_ip: u32,
    /// Per-key limit per minute (0 = off).
    pub rate_per_key: u32,
    /// Trusted proxies.
    pub trusted_proxies: Vec<Cidr>,
    /// Workspace URL pattern with `{uuid}`.
    pub workspace_url_pattern: String,
    /// Live sessions per user (0 = unlimited).
    pub max_sessions_per_user: u32,
    /// Largest per-session idle timeout, seconds.
    pub max_idle_timeout_secs: u64,
    /// Body cap in bytes.
    pub max_body_bytes: usize,
    /// Connection cap.
    pub max_connections: usize,
    /// Header read timeout.
    pub header_read_timeout: Duration,
    /// Body read timeout.
    pub body_read_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Redis connect / response timeout.
    pub redis_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Workspace protection mode.
    pub workspace_auth: WorkspaceAuth,
    /// Access-link keys; always present with [`WorkspaceAuth::Token`].
    pub access_keys: Option<Keys>,
    /// Access-link lifetime.
    pub access_link_ttl: Duration,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No key in `API_KEYS` nor `API_KEYS_FILE`.
    #[error("no API key configured: set API_KEYS or API_KEYS_FILE")]
    NoKey,
    /// The old system's default key is configured.
    #[error("refusing the old default API key; configure a secret key in API_KEYS")]
    DefaultKey,
    /// The keys file could not be read.
    #[error("cannot read API_KEYS_FILE {path}: {source}")]
    KeysFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A trusted proxy entry is not a network.
    #[error("TRUSTED_PROXIES: {0}")]
    TrustedProxies(#[from] CidrError),
    /// The workspace pattern lacks `{uuid}`.
    #[error("WORKSPACE_URL_PATTERN must contain {{uuid}}")]
    Pattern,
    /// The Redis URL does not parse.
    #[error("REDIS_URL is not a valid redis URL: {0}")]
    RedisUrl(String),
    /// A numeric setting is out of range.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Token mode without keys.
    #[error(
        "no ACCESS_KEYS configured: WORKSPACE_AUTH=token (the default) needs `id:secret` keys; \
         set WORKSPACE_AUTH=none to hand out open workspace links"
    )]
    NoAccessKeys,
    /// The access keys do not parse.
    #[error("ACCESS_KEYS: {0}")]
    AccessKeys(#[from] KeysError),
    /// The link lifetime is out of range.
    #[error("ACCESS_LINK_TTL must be 1 to {MAX_ACCESS_LINK_TTL_SECS} seconds")]
    AccessLinkTtl,
}

impl Args {
    /// Validates into a [`Config`], reading `API_KEYS_FILE` if set.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut keys: Vec<String> = self.api_keys.split(',').map(|k| k.trim().to_owned()).collect();
        if let Some(path) = &self.api_keys_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::KeysFile { path: path.clone(), source })?;
            keys.extend(
                text.lines().flat_map(|l| l.split('#').next().unwrap_or("").split(',')).map(|k| k.trim().to_owned()),
            );
        }
        let admin: Vec<String> =
            self.admin_api_keys.split(',').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
        keys.extend(admin.iter().cloned());
        keys.retain(|k| !k.is_empty());
        if keys.iter().any(|k| k == OLD_DEFAULT_KEY) {
            return Err(ConfigError::DefaultKey);
        }
        let keys = KeySet::new(keys.iter().map(String::as_str));
        let admin_keys = KeySet::new(admin.iter().map(String::as_str));
        if keys.is_empty() {
            return Err(ConfigError::NoKey);
        }
        if !self.workspace_url_pattern.contains("{uuid}") {
            return Err(ConfigError::Pattern);
        }
        redis::Client::open(self.redis_url.as_str()).map_err(|e| ConfigError::RedisUrl(e.to_string()))?;
        let access_keys = match (self.workspace_auth, self.access_keys.trim().is_empty()) {
            (WorkspaceAuth::Token, true) => return Err(ConfigError::NoAccessKeys),
            (_, true) => None,
            (_, false) => Some(Keys::parse(&self.access_keys)?),
        };
        if self.access_link_ttl == 0 || self.access_link_ttl > MAX_ACCESS_LINK_TTL_SECS {
            return Err(ConfigError::AccessLinkTtl);
        }
        for (name, v) in [
            ("MAX_BODY_BYTES", self.max_body_bytes as u64),
            ("MAX_CONNECTIONS", self.max_connections as u64),
            ("HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("BODY_READ_TIMEOUT", self.body_read_timeout),
            ("REQUEST_TIMEOUT", self.request_timeout),
            ("REDIS_TIMEOUT_MS", self.redis_timeout_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(Config {
            addr: self.addr,
            redis_url: self.redis_url,
            keys,
            admin_keys,
            rate_per_ip: self.rate_limit_per_minute,
            rate_per_key: self.rate_limit_per_key_per_minute,
            trusted_proxies: parse_cidrs(&self.trusted_proxies)?,
            workspace_url_pattern: self.workspace_url_pattern,
            max_sessions_per_user: self.max_sessions_per_user,
            max_idle_timeout_secs: self.max_idle_timeout,
            max_body_bytes: self.max_body_bytes,
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            body_read_timeout: Duration::from_secs(self.body_read_timeout),
            request_timeout: Duration::from_secs(self.request_timeout),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
            log_format: self.log_format,
            workspace_auth: self.workspace_auth,
            access_keys,
            access_link_ttl: Duration::from_secs(self.access_link_ttl),
        })
    }
}

#[doc(hidden)]
/// The access key of [`Config::for_tests`].
pub const TEST_ACCESS_KEYS: &str = "test:0123456789abcdef0123456789abcdef";

impl Config {
    #[doc(hidden)]
    /// A configuration for tests: the given API keys and Redis, the access
    /// key [`TEST_ACCESS_KEYS`], defaults otherwise.
    pub fn for_tests(redis_url: &str, keys: &[&str]) -> Self {
        let argv = ["api", "--redis-url", redis_url, "--api-keys", &keys.join(","), "--access-keys", TEST_ACCESS_KEYS];
        let mut args = Args::try_parse_from(argv).expect("static test arguments parse");
        args.trusted_proxies.clear();
        args.into_config().expect("test configuration is valid")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Parses `extra`, with a valid access key unless `extra` sets the access flags.
    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["api"];
        if !extra.iter().any(|a| *a == "--access-keys" || *a == "--workspace-auth") {
            argv.extend_from_slice(&["--access-keys", TEST_ACCESS_KEYS]);
        }
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn defaults() {
        let c = parse(&["--api-keys", "k1,k2"]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.rate_per_ip, 100);
        assert_eq!(c.max_sessions_per_user, 3);
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.workspace_url_pattern, "https://vs-code-{uuid}.preview.example.com");
    }

    #[test]
    fn refuses_no_key_and_the_old_default() {
        assert!(matches!(parse(&[]), Err(ConfigError::NoKey)));
        assert!(matches!(parse(&["--api-keys", " , "]), Err(ConfigError::NoKey)));
        assert!(matches!(
            parse(&["--api-keys", "ok,your-secure-api-key-change-in-production"]),
            Err(ConfigError::DefaultKey)
        ));
    }

    #[test]
    fn access_links_are_signed_by_default_and_open_only_when_asked() {
        let c = parse(&["--api-keys", "k"]).unwrap();
        assert_eq!(c.workspace_auth, WorkspaceAuth::Token);
        assert!(c.access_keys.is_some());
        assert_eq!(c.access_link_ttl, Duration::from_secs(300));
        assert!(matches!(parse(&["--api-keys", "k", "--access-keys", ""]), Err(ConfigError::NoAccessKeys)));
        assert!(matches!(
            parse(&["--api-keys", "k", "--access-keys", "a:short"]),
            Err(ConfigError::AccessKeys(KeysError::Short(_)))
        ));
        let open = parse(&["--api-keys", "k", "--workspace-auth", "none"]).unwrap();
        assert_eq!((open.workspace_auth, open.access_keys.is_none()), (WorkspaceAuth::None, true));
        for ttl in ["0", "301"] {
            assert!(matches!(parse(&["--api-keys", "k", "--access-link-ttl", ttl]), Err(ConfigError::AccessLinkTtl)));
        }
        assert_eq!(parse(&["--api-keys", "k", "--access-link-ttl", "60"]).unwrap().access_link_ttl.as_secs(), 60);
    }

    #[test]
    fn keys_file_adds_keys() {
        let dir = std::env::temp_dir().join(format!("api-keys-test-{}", std::process::id()));
        std::fs::write(&dir, "# rotated 2025-11\nalpha\n\nbeta # new\ngamma,delta\n").unwrap();
        let c = parse(&["--api-keys-file", dir.to_str().unwrap()]).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(c.keys.len(), 4);
        assert!(c.keys.check(b"beta").is_some());
        assert!(c.keys.check(b"delta").is_some());
        assert!(matches!(parse(&["--api-keys-file", "/nonexistent/keys"]), Err(ConfigError::KeysFile { .. })));
    }

    #[test]
    fn bad_values() {
        assert!(matches!(
            parse(&["--api-keys", "k", "--trusted-proxies", "10.0.0.0/99"]),
            Err(ConfigError::TrustedProxies(_))
        ));
        assert!(matches!(
            parse(&["--api-keys", "k", "--workspace-url-pattern", "https://x"]),
            Err(ConfigError::Pattern)
        ));
        assert!(matches!(parse(&["--api-keys", "k", "--redis-url", "http://x"]), Err(ConfigError::RedisUrl(_))));
        assert!(matches!(parse(&["--api-keys", "k", "--max-body-bytes", "0"]), Err(ConfigError::Zero(_))));
    }
}
