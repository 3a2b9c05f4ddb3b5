//! [`ApiError`]: every way a request can fail, with its HTTP status, its
//! stable snake_case `code` and a human sentence, rendered as the JSON body
//! `{"error":{"code","message"}}` every client sees.
//!
//! This module only maps failures to responses; deciding that something
//! failed is the job of the routing, validation and store modules. A
//! [`StoreError`] is matched by kind: Redis away or contended is 503 (retry
//! later), anything Redis holds that this version cannot use is 500.

use http::{HeaderValue, StatusCode, header};
use proto_types::{Command, SessionState};

use crate::http::response::{HttpResponse, json_response};
use crate::store::StoreError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no route for {path}")]
    NotFound {
        /// The path asked for (truncated for the message).
        path: String,
    },
    /// The path exists but not with this method.
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// Comma-separated allowed methods (the `Allow` header).
        allow: String,
    },
    /// No API key was sent.
    #[error("an API key is required (X-API-Key header or Authorization: Bearer)")]
    MissingKey,
    /// The API key is not one of the configured keys.
    #[error("the API key is not valid")]
    WrongKey,
    /// Too many requests from this client or key.
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be accepted.
        retry_after_secs: u64,
    },
    /// The body is larger than the cap.
    #[error("request body is larger than {max} bytes")]
    PayloadTooLarge {
        /// The cap.
        max: usize,
    },
    /// The client did not send the whole body in time.
    #[error("the request body did not arrive within {secs} s")]
    BodyTimeout {
        /// The timeout.
        secs: u64,
    },
    /// The body is not `application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// Malformed input (JSON, ids, query, headers).
    #[error("{message}")]
    BadRequest {
        /// Stable code, e.g. `invalid_json`, `invalid_uuid`.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such session.
    #[error("session {0} not found")]
    SessionNotFound(String),
    /// No such job.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// No such backup.
    #[error("backup {0} not found")]
    BackupNotFound(String),
    /// The backup to restore from was deleted.
    #[error("backup {0} was deleted; its files can no longer be restored")]
    BackupDeleted(String),
    /// The backup is still being taken: it cannot be deleted yet.
    #[error("backup {0} is still being taken; delete it once its job has finished")]
    BackupInProgress(String),
    /// The backup to restore from holds nothing to restore.
    #[error("backup {id} is {state}; only a succeeded backup can be restored")]
    BackupNotRestorable {
        /// The backup.
        id: String,
        /// Its state.
        state: String,
    },
    /// The session's state refuses the command.
    #[error("cannot {command} a session that is {current}")]
    InvalidState {
        /// The refused command.
        command: Command,
        /// The session's status now.
        current: SessionState,
    },
    /// The user already has the maximum number of live sessions.
    #[error("user already has {live} live sessions; the limit is {max}. Delete one first")]
    SessionLimit {
        /// Live sessions.
        live: u64,
        /// Configured limit.
        max: u32,
    },
    /// The idempotency key was used for a different request.
    #[error("Idempotency-Key was already used for a different request (job {job_id})")]
    IdempotencyMismatch {
        /// The job the key was first used for.
        job_id: String,
    },
    /// Redis could not be reached or did not answer in time.
    #[error("the session store is unavailable; retry later")]
    StoreUnavailable,
    /// The request took longer than the request timeout.
    #[error("the request did not complete in time; retry later")]
    Timeout,
    /// A stored record is not in the shape this version understands.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. }
            | ApiError::SessionNotFound(_)
            | ApiError::JobNotFound(_)
            | ApiError::BackupNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MissingKey | ApiError::WrongKey => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidState { .. }
            | ApiError::SessionLimit { .. }
            | ApiError::BackupNotRestorable { .. }
            | ApiError::BackupInProgress(_) => StatusCode::CONFLICT,
            ApiError::BackupDeleted(_) => StatusCode::GONE,
            ApiError::IdempotencyMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::StoreUnavailable | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::MissingKey => "missing_api_key",
            ApiError::WrongKey => "invalid_api_key",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BadRequest { code, .. } => code,
            ApiError::SessionNotFound(_) => "session_not_found",
            ApiError::JobNotFound(_) => "job_not_found",
            ApiError::BackupNotFound(_) => "backup_not_found",
            ApiError::BackupDeleted(_) => "backup_deleted",
            ApiError::BackupNotRestorable { .. } => "backup_not_restorable",
            ApiError::BackupInProgress(_) => "backup_in_progress",
            ApiError::InvalidState { .. } => "invalid_state",
            ApiError::SessionLimit { .. } => "session_limit_reached",
            ApiError::IdempotencyMismatch { .. } => "idempotency_key_reused",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Timeout => "timeout",
            ApiError::Internal => "internal",
        }
    }

    /// Shorthand for a 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// The JSON response, with `Allow` / `Retry-After` where they apply.
    pub fn into_response(self) -> HttpResponse {
        let mut body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        if let ApiError::InvalidState { current, .. } = &self {
            body["error"]["current_state"] = serde_json::Value::from(current.as_str());
        }
        if let ApiError::IdempotencyMismatch { job_id } = &self {
            body["error"]["job_id"] = serde_json::Value::from(job_id.as_str());
        }
        let mut resp = json_response(self.status(), &body);
        match &self {
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
            }
            ApiError::RateLimited { retry_after_secs } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::StoreUnavailable | ApiError::Timeout => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            _ => {}
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Client(sm_redis::Error::Redis(e)) => {
                tracing::warn!(error = %e, "redis unavailable");
                ApiError::StoreUnavailable
            }
            StoreError::Client(sm_redis::Error::Contended { .. }) => {
                tracing::warn!(error = %e, "enqueue gave up");
                ApiError::StoreUnavailable
            }
            StoreError::Client(
                sm_redis::Error::Corrupt(_)
                | sm_redis::Error::Reply(_)
                | sm_redis::Error::Codec(_)
                | sm_redis::Error::Random,
            )
            | StoreError::RateLimitReplies { .. }
            | StoreError::RateLimitReply { .. } => {
                let e: &dyn std::error::Error = &e;
                tracing::error!(error = e, "store returned something this version cannot use");
                ApiError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_state_names_the_current_state() {
        let e = ApiError::InvalidState { command: Command::Wake, current: SessionState::Deleted };
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.to_string(), "cannot wake a session that is deleted");
    }

    #[test]
    fn store_errors_map_by_kind() {
        let away = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(ApiError::from(StoreError::from(away)), ApiError::StoreUnavailable));
        let contended = StoreError::Client(sm_redis::Error::Contended { attempts: 8 });
        assert!(matches!(ApiError::from(contended), ApiError::StoreUnavailable));
        let unknown = proto_types::SessionState::parse("melted").expect_err("not a state");
        let corrupt = StoreError::from(sm_redis::CorruptRecord::new("{sm}:session:abc", "status", unknown));
        assert!(matches!(ApiError::from(corrupt), ApiError::Internal));
        let reply = StoreError::RateLimitReply { key: "k".into(), reply: vec![1] };
        assert!(matches!(ApiError::from(reply), ApiError::Internal));
    }

    #[test]
    fn method_not_allowed_sets_allow() {
        let r = ApiError::MethodNotAllowed { method: "PUT".into(), allow: "GET, DELETE".into() }.into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, DELETE");
    }
}
