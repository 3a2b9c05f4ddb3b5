//! Kubernetes client errors as the runner's typed [`ExecError`]:
//! [`ExecError::Retryable`] (429, 5xx, 409 conflicts, timeouts, connection
//! failures) or [`ExecError::Permanent`] (403, 422, 400 and other invalid
//! requests), with the Kubernetes message in the text and the `kube::Error`
//! itself kept as the source.
//!
//! 404 is not an error for deletes; callers that tolerate it check
//! [`is_not_found`] first.

use proto_types::SessionState;

use crate::executor::ExecError;

/// Whether the error is the API server's 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Whether the error is the API server's 409 (a failed precondition or an
/// object that already exists).
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

/// Whether an HTTP status from the API server is worth retrying.
pub fn retryable_status(code: u16) -> bool {
    code == 408 || code == 409 || code == 429 || code >= 500
}

/// The [`ExecError`] of a failed Kubernetes call `what` (e.g. `apply
/// Deployment ws-abc`), keeping `err` as its source.
pub fn exec_error(what: &str, err: kube::Error) -> ExecError {
    let kind = match &err {
        kube::Error::Api(status) => {
            let message =
                format!("{what}: {} {} ({}): {}", status.code, status.reason, what_kind(status.code), status.message);
            if retryable_status(status.code) {
                ExecError::retryable(message)
            } else {
                ExecError::permanent(message, SessionState::Failed)
            }
        }
        // Bad request built from our own objects: retrying sends the same thing.
        kube::Error::BuildRequest(e) => {
            ExecError::permanent(format!("{what}: invalid request: {e}"), SessionState::Failed)
        }
        // Transport, TLS, timeouts, undecodable responses from a proxy...
        other => ExecError::retryable(format!("{what}: {other}")),
    };
    kind.caused_by(err)
}

fn what_kind(code: u16) -> &'static str {
    match code {
        400 => "bad request",
        403 => "forbidden",
        404 => "not found",
        409 => "conflict",
        422 => "invalid",
        429 => "too many requests",
        500..=599 => "server error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, msg: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(msg, "Reason").with_code(code).boxed())
    }

    #[test]
    fn table() {
        let cases: &[(u16, bool)] = &[
            (400, false),
            (403, false),
            (422, false),
            (405, false),
            (408, true),
            (409, true),
            (429, true),
            (500, true),
            (503, true),
            (504, true),
        ];
        for (code, retry) in cases {
            let e = exec_error("apply Deployment ws-x", api(*code, "the message"));
            assert_eq!(e.is_retryable(), *retry, "{code}");
            let text = e.to_string();
            assert!(text.contains("the message") && text.contains("ws-x"), "{text}");
        }
        assert!(is_not_found(&api(404, "gone")));
        assert!(!is_not_found(&api(500, "x")));
        let conn = kube::Error::Service("connection refused".into());
        assert!(exec_error("get", conn).is_retryable());
    }

    #[test]
    fn permanent_errors_mark_the_session_failed() {
        match exec_error("apply", api(403, "forbidden: no RBAC")) {
            ExecError::Permanent { status, message, .. } => {
                assert_eq!(status, SessionState::Failed);
                assert!(message.contains("forbidden: no RBAC"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_kube_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let e = exec_error("apply", api(422, "spec.replicas: Invalid value"));
        let source = e.source().expect("the kube::Error is the source");
        assert!(source.to_string().contains("spec.replicas"), "{source}");
        assert!(!e.is_retryable());
    }
}
