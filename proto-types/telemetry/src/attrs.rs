//! Span names and attribute keys shared by the api and the worker, so a
//! trace reads the same whichever process emitted a span.
//!
//! Keys follow the OpenTelemetry semantic conventions where one exists
//! (`messaging.*` for the Redis stream, `http.*`/`url.*` for the Kubernetes
//! client); the rest are this project's own (`job.id`, `session.uuid`,
//! `command`, `attempt`). `tracing` accepts constants as field names in
//! braces: `tracing::info_span!("job.process", { attrs::JOB_ID } = %id)`;
//! a field declared `Empty` can be filled later with
//! [`tracing::Span::record`]. Not a place for metric names.

/// Span of one HTTP request in the api (`otel.kind = "server"`).
pub const HTTP_REQUEST_SPAN: &str = "http.request";
/// Span of the api enqueueing a job (`otel.kind = "producer"`).
pub const ENQUEUE_SPAN: &str = "job.enqueue";
/// Span of one delivery attempt of a job in the worker (`otel.kind = "consumer"`),
/// a child of the request span through the job's `traceparent`.
pub const JOB_SPAN: &str = "job.process";
/// Span of one Kubernetes API call (`otel.kind = "client"`).
pub const KUBE_REQUEST_SPAN: &str = "kube.request";

/// The job's id.
pub const JOB_ID: &str = "job.id";
/// The session's id (a UUID).
pub const SESSION_UUID: &str = "session.uuid";
/// The command (`create`, `sleep`, ...).
pub const COMMAND: &str = "command";
/// The delivery attempt, starting at 1.
pub const ATTEMPT: &str = "attempt";

/// Messaging system: always [`MESSAGING_SYSTEM_REDIS`].
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// The value of [`MESSAGING_SYSTEM`].
pub const MESSAGING_SYSTEM_REDIS: &str = "redis";
/// The stream key.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
/// `send` (api, XADD), `receive` (worker, XREADGROUP/XAUTOCLAIM), `settle` (XACK).
pub const MESSAGING_OPERATION: &str = "messaging.operation";
/// The stream entry id (`1700000000000-0`).
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
/// The consumer group.
pub const MESSAGING_CONSUMER_GROUP_NAME: &str = "messaging.consumer.group.name";

/// HTTP method of a Kubernetes call (`GET`, `PATCH`, `DELETE`).
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// Path of a Kubernetes call (no query string).
pub const URL_PATH: &str = "url.path";
/// HTTP status of a Kubernetes call (or of an api response).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// HTTP route template of an api request (`/sessions/{id}/commands`).
pub const HTTP_ROUTE: &str = "http.route";

/// Special field read by `tracing-opentelemetry`: span kind.
pub const OTEL_KIND: &str = "otel.kind";
/// Special field read by `tracing-opentelemetry`: `ok` or `error`.
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
/// Special field read by `tracing-opentelemetry`: the error message.
pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";
