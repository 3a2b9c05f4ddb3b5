//! The request handler: routes each HTTP request (see `route.rs`) to discovery, the namespace
//! store, the scale/watch adapters, or the in-memory fake cluster, and fills the gaps the fake
//! leaves: call recording, fault injection, delete preconditions (`uid`, `resourceVersion`),
//! namespaces created on first write, list `resourceVersion`s usable for a following watch,
//! and `kind: Status` JSON for every error.
//!
//! Mutating requests are serialized by one lock, so a precondition check and its delete (or the
//! fake's get-then-create inside server-side apply) cannot interleave with another write.

use crate::discovery;
use crate::faults::Faults;
use crate::namespaces::Namespaces;
use crate::recorder::Recorder;

/// Header a test sets on its own inspection requests: they are neither
/// recorded as calls nor subject to fault injection.
pub const OBSERVER_HEADER: &str = "x-standin-observer";
use crate::respond::{self, Body};
use crate::route::{self, ResourceRequest, Route};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared state of the server.
pub struct Handler {
    client: kube::Client,
    namespaces: Namespaces,
    recorder: Recorder,
    faults: Faults,
    writes: tokio::sync::Mutex<()>,
    max_rv: AtomicU64,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Handler {
    /// A handler over the fake cluster `client`. `shutdown` flips to `true` to end open watches.
    pub fn new(
        client: kube::Client,
        namespaces: Namespaces,
        recorder: Recorder,
        faults: Faults,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            client,
            namespaces,
            recorder,
            faults,
            writes: tokio::sync::Mutex::new(()),
            max_rv: AtomicU64::new(1),
            shutdown,
        }
    }

    /// The in-memory cluster client (what the simulated kubelet and tests use directly).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The fault injector (tests arm it while the server runs).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The namespace store.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// A receiver that turns `true` when the server shuts down.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Answer one HTTP request. Never fails: errors become `kind: Status` responses.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Result<Response<Body>, Infallible>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
        Ok(self.route(req).instrument(span).await)
    }

    async fn route<B>(self: Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let query = req.uri().query().map(str::to_string);
        match route::parse(req.uri().path(), query.as_deref()) {
            Route::Health => respond::ok_text(),
            Route::Version => respond::json(StatusCode::OK, &discovery::version()),
            Route::CoreVersions => respond::json(StatusCode::OK, &discovery::core_versions()),
            Route::GroupList => respond::json(StatusCode::OK, &discovery::group_list()),
            Route::ResourceList { group, version } => match discovery::resource_list(&group, &version) {
                Some(list) => respond::json(StatusCode::OK, &list),
                None => respond::not_found_path(),
            },
            Route::Unknown => respond::not_found_path(),
            Route::Resource(r) => self.resource(r, req, query).await,
        }
    }

    async fn resource<B>(self: Arc<Self>, r: ResourceRequest, req: Request<B>, query: Option<String>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = req.method().clone();
        // Tests that inspect the cluster mark their own requests: only the
        // system under test's calls are evidence for the RBAC check, and
        // only its calls are subject to fault injection.
        let observer = req.headers().contains_key(OBSERVER_HEADER);
        if !observer {
            self.recorder.record(&r.record_line(&method));
        }
        let injected = if observer { None } else { self.faults.take() };
        if let Some(code) = injected {
            tracing::info!(code = code.as_u16(), "injected failure");
            let mut resp =
                respond::status(code, respond::reason_for(code), "injected failure (kube-standin fault injection)");
            if code == StatusCode::TOO_MANY_REQUESTS {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return resp;
        }
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return respond::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    "request body is too large",
                );
            }
            Err(e) => return respond::status(StatusCode::BAD_REQUEST, "BadRequest", &format!("reading body: {e}")),
        };

        if r.group.is_empty() && r.resource == "namespaces" && r.namespace.is_none() {
            if r.watch {
                return crate::watch::serve_namespaces(self, query);
            }
            if r.subresource.is_some() {
                return respond::not_found_path();
            }
            let _write = self.lock_if_write(&method).await;
            return self.namespaces.handle(&method, r.name.as_deref(), &body);
        }
        if r.watch && method == Method::GET {
            return crate::watch::serve(self, r, query);
        }
        match r.subresource.as_deref() {
            None | Some("status") => {}
            Some("scale") if r.group == "apps" && r.resource == "deployments" => {
                let _write = self.lock_if_write(&method).await;
                return crate::scale::handle(&self, &method, &path, content_type.as_ref(), &body).await;
            }
            Some(_) => return respond::not_found_path(),
        }

        let _write = self.lock_if_write(&method).await;
        if matches!(method, Method::POST | Method::PUT | Method::PATCH)
            && let Some(ns) = &r.namespace
        {
            self.namespaces.ensure(ns);
        }
        if method == Method::DELETE
            && r.name.is_some()
            && let Some(refused) = self.check_delete_preconditions(&path, &body).await
        {
            return refused;
        }
        let path_and_query = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        self.forward(method, &path_and_query, content_type, body).await
    }

    async fn lock_if_write(&self, method: &Method) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match *method {
            Method::GET | Method::HEAD => None,
            _ => Some(self.writes.lock().await),
        }
    }

    /// `Some(409)` when the delete body carries preconditions the stored object does not meet.
    async fn check_delete_preconditions(&self, path: &str, body: &[u8]) -> Option<Response<Body>> {
        let options: Value = serde_json::from_slice(body).ok()?;
        let pre = options.get("preconditions")?;
        let want_uid = pre.get("uid").and_then(Value::as_str);
        let want_rv = pre.get("resourceVersion").and_then(Value::as_str);
        let current = self.get_json(path).await.ok()?;
        let meta = &current["metadata"];
        if let Some(want) = want_uid
            && meta["uid"].as_str() != Some(want)
        {
            let have = meta["uid"].as_str().unwrap_or("");
            return Some(respond::status(
                StatusCode::CONFLICT,
                "Conflict",
                &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {have}"),
            ));
        }
        if let Some(want) = want_rv
            && meta["resourceVersion"].as_str() != Some(want)
        {
            let have = meta["resourceVersion"].as_str().unwrap_or("");
            return Some(respond::status(
                StatusCode::CONFLICT,
                "Conflict",
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {have}"
                ),
            ));
        }
        None
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

    /// Forward to the fake, noting resource versions and fixing up list `resourceVersion`s.
    async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response<Body> {
        let (code, bytes) = match self.send(method, path_and_query, content_type, body).await {
            Ok(answer) => answer,
            Err(resp) => return resp,
        };
        if !code.is_success() {
            return respond::raw_json(code, bytes);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut value) => {
                self.note_versions(&mut value);
                respond::json(code, &value)
            }
            Err(_) => respond::raw_json(code, bytes),
        }
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
