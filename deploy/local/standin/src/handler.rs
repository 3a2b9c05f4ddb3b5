//! The request handler: routes each HTTP request (see `route.rs`) to discovery, the namespace
//! store, the scale/watch adapters, or the in-memory fake cluster, and fills the gaps the fake
//! leaves: call recording, fault injection, delete preconditions (`uid`, `resourceVersion`),
//! namespaces created on first write, list `resourceVersion`s usable for a following watch,
//! and `kind: Status` JSON for every error.
//!
//! Mutating requests are serialized by one lock, so a precondition check and its delete (or the
//! fake's get-then-create inside server-side apply) cannot interleave with another write.

use crate::discovery;
use crate::fake::Fake;
use crate::faults::Faults;
use crate::pod_logs::PodLogs;
use crate::recorder::Recorder;
use crate::respond::{self, Body};
use crate::route::{self, ResourceRequest, Route};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use tracing::Instrument;

/// Header a test sets on its own inspection requests: they are neither
/// recorded as calls nor subject to fault injection.
pub const OBSERVER_HEADER: &str = "x-standin-observer";

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared state of the server.
pub struct Handler {
    fake: Arc<Fake>,
    recorder: Recorder,
    faults: Faults,
    logs: Option<PodLogs>,
    writes: tokio::sync::Mutex<()>,
}

impl Handler {
    /// A handler over `fake`; `logs` serves the pods' `log` subresource when given.
    pub fn new(fake: Arc<Fake>, recorder: Recorder, faults: Faults, logs: Option<PodLogs>) -> Self {
        Self { fake, recorder, faults, logs, writes: tokio::sync::Mutex::new(()) }
    }

    /// The in-memory cluster client (what the simulated kubelet and tests use directly).
    pub fn client(&self) -> &kube::Client {
        self.fake.client()
    }

    /// The fault injector (tests arm it while the server runs).
    pub fn faults(&self) -> &Faults {
        &self.faults
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
                return crate::watch::serve_namespaces(Arc::clone(&self.fake), query);
            }
            if r.subresource.is_some() {
                return respond::not_found_path();
            }
            let _write = self.lock_if_write(&method).await;
            return self.fake.namespaces().handle(&method, r.name.as_deref(), &body);
        }
        if r.watch && method == Method::GET {
            return crate::watch::serve(Arc::clone(&self.fake), r, query);
        }
        match r.subresource.as_deref() {
            None | Some("status") => {}
            Some("scale") if r.group == "apps" && r.resource == "deployments" => {
                let _write = self.lock_if_write(&method).await;
                return crate::scale::handle(&self.fake, &method, &path, content_type.as_ref(), &body).await;
            }
            Some("log") if r.group.is_empty() && r.resource == "pods" && method == Method::GET => {
                return match (&self.logs, &r.namespace, &r.name) {
                    (Some(logs), Some(ns), Some(name)) => logs.serve(self.fake.client(), ns, name).await,
                    _ => respond::not_found_path(),
                };
            }
            Some(_) => return respond::not_found_path(),
        }

        let _write = self.lock_if_write(&method).await;
        if matches!(method, Method::POST | Method::PUT | Method::PATCH)
            && let Some(ns) = &r.namespace
        {
            self.fake.namespaces().ensure(ns);
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
        let current = self.fake.get_json(path).await.ok()?;
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

    /// Forward to the fake, noting resource versions and fixing up list `resourceVersion`s.
    async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response<Body> {
        let (code, bytes) = match self.fake.send(method, path_and_query, content_type, body).await {
            Ok(answer) => answer,
            Err(resp) => return resp,
        };
        if !code.is_success() {
            return respond::raw_json(code, bytes);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut value) => {
                self.fake.note_versions(&mut value);
                respond::json(code, &value)
            }
            Err(_) => respond::raw_json(code, bytes),
        }
    }
}
