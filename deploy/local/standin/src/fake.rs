//! The fake cluster as the request adapters see it: the in-memory `kube-fake-client` client,
//! the namespace store beside it, the highest `resourceVersion` handed out, and the shutdown
//! signal that ends open watches. `handler.rs` routes requests here; the `scale` and `watch`
//! adapters use only this, so none of them depends on the handler.

use crate::namespaces::Namespaces;
use crate::respond::{self, Body};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

/// The fake cluster and what the server keeps beside it.
pub struct Fake {
    client: kube::Client,
    namespaces: Namespaces,
    max_rv: AtomicU64,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Fake {
    /// The fake behind `client`, with `namespaces`; `shutdown` turns `true` to end watches.
    pub fn new(client: kube::Client, namespaces: Namespaces, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { client, namespaces, max_rv: AtomicU64::new(1), shutdown }
    }

    /// The in-memory cluster client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The namespace store.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// A receiver that turns `true` when the server shuts down.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// GET `path` from the fake and parse it; `Err` carries the (error) response.
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, Response<Body>> {
        let (code, bytes) = self.send(Method::GET, path, None, Bytes::new()).await?;
        if !code.is_success() {
            return Err(respond::raw_json(code, bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            respond::status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &format!("fake returned bad JSON: {e}"))
        })
    }

    /// Send one request to the fake cluster and collect its answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), Response<Body>> {
        let mut builder = Request::builder().method(method).uri(path_and_query);
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let req = builder
            .body(kube::client::Body::from(body))
            .map_err(|e| respond::status(StatusCode::BAD_REQUEST, "BadRequest", &format!("bad request: {e}")))?;
        let resp = self.client.send(req).await.map_err(|e| {
            // The fake answers unparseable paths and bodies with a service error.
            respond::status(StatusCode::BAD_REQUEST, "BadRequest", &format!("the request is invalid: {e}"))
        })?;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| {
                respond::status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &format!("reading fake body: {e}"))
            })?
            .to_bytes();
        Ok((parts.status, bytes))
    }

    /// Track the highest resourceVersion seen; give lists that version so a watch can resume.
    pub(crate) fn note_versions(&self, value: &mut Value) {
        let rv_of = |v: &Value| v["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse::<u64>().ok());
        if let Some(items) = value.get("items").and_then(Value::as_array) {
            let max = items.iter().filter_map(rv_of).max().unwrap_or(0);
            let now = self.max_rv.fetch_max(max, Ordering::SeqCst).max(max);
            value["metadata"]["resourceVersion"] = Value::String(now.to_string());
        } else if let Some(rv) = rv_of(value) {
            self.max_rv.fetch_max(rv, Ordering::SeqCst);
        }
    }
}
