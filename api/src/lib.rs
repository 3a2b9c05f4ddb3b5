//! # api: the session manager's HTTP front end
//!
//! A hyper 1.x server that authenticates, validates, rate-limits and
//! enqueues session commands to Redis, and answers status from what the
//! worker records. It holds no Kubernetes credentials.
//!
//! ## Layout
//! Three layers, each importing only the ones below it:
//!
//! | module | layer | job |
//! |---|---|---|
//! | [`http`] | in | server, request pipeline, routes, handlers, validation, auth, rate-limit policy, errors |
//! | [`views`] | between | response bodies and the old timestamp format: records in, serde structs out |
//! | [`store`] | out | the Redis adapter: reads, the rate-limit script ([`store::gcra`]), enqueue through [`sm_redis`] |
//! | [`gateway`] | – | the `gateway` binary's library: the authenticated workspace proxy |
//! | [`access`] | – | signed, single-use workspace access links (pure) |
//! | [`config`] | – | clap flags / env, validated into [`Config`] |
//! | [`metrics`] | – | Prometheus metrics |
//!
//! [`store`] imports nothing from [`http`] or [`views`], so another binary
//! (the gateway) can read sessions and enqueue without the HTTP layer.

pub mod access;
pub mod config;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod store;
pub mod views;

pub use config::{Args, Config, ConfigError};
pub use http::{ApiError, ServeError, serve};
