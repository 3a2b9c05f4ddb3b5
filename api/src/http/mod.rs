//! The HTTP layer: everything between a TCP connection and a call into
//! the store. Nothing below this module (the store, the views) imports it.
//!
//! | module | job |
//! |---|---|
//! | [`server`] | accept loop, connection cap, timeouts, graceful shutdown ([`serve`]) |
//! | [`service`] | the per-request pipeline: route, key, rate limit, body, handler, metrics |
//! | [`state`] | [`AppState`]: config, store, metrics, shared by every request |
//! | [`routes`] | the route table (also what the OpenAPI test walks) and the OpenAPI document |
//! | [`handlers`] | one function per endpoint |
//! | [`backups`] | the backup endpoints (list, get, mark deleted) |
//! | [`access_link`] | access links: nonce, expiry, URL (the token itself is [`crate::access`]) |
//! | [`validate`] | body cap, content type, strict JSON, `user_id`, query |
//! | [`auth`] | API key digests, constant-time check |
//! | [`ratelimit`] | which buckets a request is charged to, the 429 and the headers |
//! | [`net`] | client IP behind trusted proxies |
//! | [`error`] | [`ApiError`], its JSON rendering and the mapping from store errors |
//! | [`response`] | body type, JSON and plain responses |

pub mod access_link;
pub mod auth;
pub mod backups;
pub mod error;
pub mod handlers;
pub mod net;
pub mod ratelimit;
pub mod response;
pub mod routes;
pub mod server;
pub mod service;
pub mod state;
pub mod validate;

pub use self::error::ApiError;
pub use self::server::{ServeError, serve};
pub use self::state::AppState;
