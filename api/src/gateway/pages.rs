//! Every answer the gateway makes itself: error pages (a small HTML page
//! when the client accepts `text/html`, else the house JSON
//! `{"error":{"code","message"}}`), the waking page, the status poll, the
//! token exchange redirect. Pure builders; no I/O.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

/// The body every gateway response uses: a proxied stream or our own bytes.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

/// Our own bytes as a [`Body`].
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Whether the client wants HTML (a browser).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html_doc(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}</style>\
         </head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

/// An error answer: `code` is snake_case, `message` a sentence.
pub fn error(status: StatusCode, code: &str, message: &str, html: bool) -> Response<Body> {
    let (ctype, body) = if html {
        (
            "text/html; charset=utf-8",
            html_doc(status.canonical_reason().unwrap_or("Error"), &format!("<p>{}</p>", escape(message))),
        )
    } else {
        ("application/json", serde_json::json!({"error": {"code": code, "message": message}}).to_string())
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// [`error`] with `Retry-After`.
pub fn unavailable(code: &str, message: &str, html: bool, retry_after_secs: u64) -> Response<Body> {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, code, message, html);
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The waking page: 200, `no-store`; polls [`STATUS_PATH`] and reloads
/// when the workspace is ready.
pub fn waking() -> Response<Body> {
    let body = html_doc(
        "Waking your workspace",
        &format!(
            "<p id=\"s\">Your workspace was asleep; it is starting. This page reloads when it is ready.</p>\
             <script>(function p(){{fetch('{STATUS_PATH}',{{cache:'no-store',credentials:'same-origin'}})\
             .then(function(r){{return r.json()}}).then(function(j){{\
             if(j.ready){{location.reload()}}else{{document.getElementById('s').textContent='Status: '+j.status+'...';setTimeout(p,1000)}}}})\
             .catch(function(){{setTimeout(p,2000)}})}})()</script>"
        ),
    );
    let mut r = Response::new(full(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The gateway's own path on every workspace host: `{"status","ready"}`.
pub const STATUS_PATH: &str = "/_sm/status";

/// The status poll's answer.
pub fn status(status: &str, ready: bool) -> Response<Body> {
    json(StatusCode::OK, &serde_json::json!({"status": status, "ready": ready}))
}

/// A JSON answer, `no-store`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 303 to `location`, setting the cookie line `set_cookie`.
pub fn exchange(location: &str, set_cookie: &str) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(set_cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// Plain text, for probes and metrics.
pub fn text(status: StatusCode, body: String, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}
