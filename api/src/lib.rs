//! # api: the session manager's HTTP front end
//!
//! A hyper 1.x server that authenticates, validates, rate-limits and
//! enqueues session commands to Redis, and answers status from what the
//! worker records. It holds no Kubernetes credentials.
//!
//! ## Layout
//! | module | job |
//! |---|---|
//! | [`config`] | clap flags / env, validated into [`Config`] |
//! | [`server`] | accept loop, connection cap, timeouts, graceful shutdown ([`serve`]) |
//! | [`service`] | the per-request pipeline: route, key, rate limit, body, handler, metrics |
//! | [`routes`] | the route table (also what the OpenAPI test walks) |
//! | [`handlers`] | one function per endpoint |
//! | [`views`] | response bodies, the old field names and status words |
//! | [`validate`] | body cap, content type, strict JSON, `user_id`, query |
//! | [`auth`] | API key digests, constant-time check |
//! | [`ratelimit`] | GCRA buckets and headers |
//! | [`net`] | client IP behind trusted proxies |
//! | [`store`] | the Redis adapter: connection, reads, rate-limit round trip |
//! | [`enqueue`] | decide + enqueue script, optimistic retry |
//! | [`records`] | typed session and job hashes |
//! | [`metrics`] | Prometheus metrics |
//! | [`error`] | [`ApiError`] and its JSON rendering |
//! | [`response`] | body type, JSON, the old timestamp format |

pub mod auth;
pub mod config;
pub mod enqueue;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod net;
pub mod ratelimit;
pub mod records;
pub mod response;
pub mod routes;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;
pub mod views;

pub use config::{Args, Config, ConfigError};
pub use error::ApiError;
pub use server::{ServeError, serve};
