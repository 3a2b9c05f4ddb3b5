//! Telemetry shared by the session-manager api and worker.
//!
//! - [`init`]: from `main`, read `RUST_LOG`, `LOG_FORMAT` and the standard
//!   `OTEL_*` variables and install the global `tracing` subscriber; keep
//!   the returned [`TelemetryGuard`] until exit (it flushes spans).
//!   [`init_with`] takes an explicit [`TelemetryConfig`]; [`build`] returns
//!   the subscriber as a `Dispatch` for tests to scope.
//! - [`current_trace_context`] (api, when enqueueing) and [`set_parent`]
//!   (worker, on the job span before entering it) carry the W3C trace
//!   context through `Job::traceparent` / `Job::tracestate`.
//! - [`attrs`]: span names and attribute keys both sides use.
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C, the one signal every binary stops on.
//!
//! Spans are exported over OTLP (`http/protobuf` by default, `grpc` with
//! the default `grpc` feature) only when an endpoint is configured;
//! otherwise no OpenTelemetry layer exists and tracing costs what plain
//! `tracing` logging costs. Metrics are not this crate's job.

pub mod attrs;
mod config;
mod init;
mod json;
mod propagation;
mod signal;

pub use config::{ConfigError, LogFormat, OtlpConfig, OtlpProtocol, SamplerConfig, TelemetryConfig};
pub use init::{TelemetryError, TelemetryGuard, build, build_with_writer, init, init_with};
pub use json::JsonWithTraceIds;
pub use propagation::{ParentError, current_trace_context, set_parent};
pub use signal::shutdown_signal;
