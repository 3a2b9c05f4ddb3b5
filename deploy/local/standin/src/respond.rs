//! Response helpers: the server's body type and the Kubernetes-shaped answers (JSON objects and
//! `kind: Status` errors) every handler returns.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::{Value, json};
use std::convert::Infallible;

/// Body of every response (boxed so streaming watch bodies fit too).
pub type Body = BoxBody<Bytes, Infallible>;

/// A full body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `code` with a JSON body.
pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    raw_json(code, Bytes::from(value.to_string()))
}

/// `code` with an already-serialized JSON body.
pub fn raw_json(code: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Plain-text `ok` (health endpoints).
pub fn ok_text() -> Response<Body> {
    let mut resp = Response::new(full("ok"));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// A `kind: Status` failure as the API server sends it.
pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

/// The Kubernetes `reason` for a status code.
pub fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// 404 for a path the server does not serve.
pub fn not_found_path() -> Response<Body> {
    status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
}
