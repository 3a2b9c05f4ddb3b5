//! Building responses: the body type, JSON rendering and the old system's
//! timestamp format.
//!
//! Times are stored as milliseconds since the epoch and rendered like the
//! old Flask system did (`2025-11-20T13:05:20.884405`: UTC, microseconds,
//! no offset), so clients parsing them keep working.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// Every response body is a complete buffer.
pub type HttpResponse = Response<Full<Bytes>>;

/// A JSON response with the given status.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    // Serializing our own response types cannot fail (no maps with non-string keys).
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A plain response with a fixed content type.
pub fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Renders ms since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC).
pub fn iso_ms(ms: u64) -> String {
    let Ok(ms) = i64::try_from(ms) else { return String::new() };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => {
            let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.subsec_nanosecond() / 1000
            )
        }
        Err(_) => String::new(),
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_old_system() {
        assert_eq!(iso_ms(1_763_643_920_884), "2025-11-20T13:05:20.884000");
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000000");
    }
}
