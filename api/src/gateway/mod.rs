//! The gateway: an authenticated reverse proxy in front of every
//! workspace (the `gateway` binary). It matches the Host against
//! `WORKSPACE_URL_PATTERN`, exchanges single-use access links for a
//! host-only cookie, wakes a sleeping session when a person navigates to
//! it, holds other requests until it is ready, proxies HTTP/1.1 and
//! WebSockets, and records activity for idle sleep. Like the api it holds
//! no Kubernetes credentials: Redis and workspace addresses only. It
//! reuses the api's accept loop, client-IP rules and access-link keys, and
//! [`sm_redis`]'s enqueue.
//!
//! | module | job |
//! |---|---|
//! | [`server`] | accept loop, background tasks, graceful shutdown ([`serve`]) |
//! | [`service`] | the per-request pipeline: own endpoints, auth, decide, act |
//! | [`decide`] | proxy / wake / hold / refuse, from session and request kind (pure) |
//! | [`host`] | Host to session, the workspace origin (pure) |
//! | [`cookie`] | the token exchange and the session cookie (pure) |
//! | [`proxy`] | forwarding, headers, timeouts, the WebSocket tunnel |
//! | [`wsframes`] | which client WebSocket frames are use (pure) |
//! | [`activity`] | last use per session, in memory until flushed |
//! | [`sessions`] | the Redis adapter: cached reads, nonces, conditional wake, flush |
//! | [`events`] | the one events-stream subscription, fanned out |
//! | [`pages`] | error pages, waking page, redirects |
//! | [`metrics`] | Prometheus metrics |
//! | [`shutdown`] | the stop signal background tasks select on |
//! | [`state`] | what requests share; the clock; open tunnels |
//! | [`config`] | clap flags / env into [`GatewayConfig`] |

pub mod activity;
pub mod config;
pub mod cookie;
pub mod decide;
pub mod events;
pub mod host;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod server;
pub mod service;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod wsframes;

pub use self::config::{AuthMode, GatewayArgs, GatewayConfig, GatewayConfigError};
pub use self::server::{GatewayServeError, serve, serve_with_clock};
pub use self::state::Clock;
