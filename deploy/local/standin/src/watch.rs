//! `?watch=true` by polling: the fake cluster has no event stream, so a watch lists the
//! collection every 100 ms and streams the differences as Kubernetes watch events (one JSON
//! `{"type","object"}` per line). Enough for `kubectl get -w`, `kubectl wait` and kube-rs
//! watchers; not a faithful event history (changes between two polls collapse into one event,
//! and objects deleted between a list and the watch that follows it are missed).
//!
//! Each watch runs in its own task, which ends at `timeoutSeconds` (default 30 min), when the
//! client goes away, or when the server shuts down.

use crate::fake::Fake;
use crate::respond::Body;
use crate::route::{ResourceRequest, query_param};
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a watch re-lists.
const POLL: Duration = Duration::from_millis(100);
/// Default and maximum watch duration.
const MAX_TIMEOUT: Duration = Duration::from_secs(1800);

/// What a watch lists.
enum Source {
    /// A collection in the fake cluster (path with selector query).
    Fake(String),
    /// The namespace store.
    Namespaces,
}

/// Serve a watch on a resource collection (or, old style, on one named object).
pub(crate) fn serve(handler: Arc<Fake>, r: ResourceRequest, query: Option<String>) -> Response<Body> {
    let mut path =
        if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
    if let Some(ns) = &r.namespace {
        path.push_str(&format!("/namespaces/{ns}"));
    }
    path.push('/');
    path.push_str(&r.resource);
    let q = query.as_deref();
    let mut params: Vec<String> = Vec::new();
    if let Some(l) = query_param(q, "labelSelector") {
        params.push(format!("labelSelector={l}"));
    }
    match (&r.name, query_param(q, "fieldSelector")) {
        (Some(name), _) => params.push(format!("fieldSelector=metadata.name%3D{name}")),
        (None, Some(f)) => params.push(format!("fieldSelector={f}")),
        (None, None) => {}
    }
    if !params.is_empty() {
        path = format!("{path}?{}", params.join("&"));
    }
    start(handler, Source::Fake(path), query)
}

/// Serve a watch on namespaces.
pub(crate) fn serve_namespaces(handler: Arc<Fake>, query: Option<String>) -> Response<Body> {
    start(handler, Source::Namespaces, query)
}

fn start(handler: Arc<Fake>, source: Source, query: Option<String>) -> Response<Body> {
    let q = query.as_deref();
    let since = query_param(q, "resourceVersion").and_then(|rv| rv.parse::<u64>().ok()).filter(|rv| *rv > 0);
    let timeout = query_param(q, "timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(MAX_TIMEOUT)
        .min(MAX_TIMEOUT);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(run(handler, source, since, timeout, tx));
    let mut resp = Response::new(ChannelBody(rx).boxed());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn run(handler: Arc<Fake>, source: Source, since: Option<u64>, timeout: Duration, tx: mpsc::Sender<Bytes>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shutdown = handler.shutdown_signal();
    let mut known: HashMap<String, (u64, Value)> = HashMap::new();
    let mut first = true;
    loop {
        let Some(items) = list(&handler, &source).await else { return };
        for (kind, mut object) in diff(&mut known, items, since, first) {
            handler.note_versions(&mut object);
            let line = format!("{}\n", json!({ "type": kind, "object": object }));
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL)) => {}
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
        if tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return;
        }
    }
}

async fn list(handler: &Fake, source: &Source) -> Option<Vec<Value>> {
    match source {
        Source::Namespaces => Some(handler.namespaces().list()),
        Source::Fake(path) => {
            let (code, bytes) = handler.send(Method::GET, path, None, Bytes::new()).await.ok()?;
            if !code.is_success() {
                return None;
            }
            let mut value: Value = serde_json::from_slice(&bytes).ok()?;
            match value.get_mut("items").map(Value::take) {
                Some(Value::Array(items)) => Some(items),
                _ => None,
            }
        }
    }
}

fn key_of(obj: &Value) -> String {
    let meta = &obj["metadata"];
    match meta["uid"].as_str() {
        Some(uid) => uid.to_string(),
        None => format!("{}/{}", meta["namespace"].as_str().unwrap_or(""), meta["name"].as_str().unwrap_or("")),
    }
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Events that take `known` to `items`. On the first round, objects are announced as ADDED
/// only when newer than `since` (all of them when `since` is 0, Kubernetes' "any" semantics).
pub(crate) fn diff(
    known: &mut HashMap<String, (u64, Value)>,
    items: Vec<Value>,
    since: Option<u64>,
    first: bool,
) -> Vec<(&'static str, Value)> {
    let mut events = Vec::new();
    let mut current: HashMap<String, (u64, Value)> = HashMap::with_capacity(items.len());
    for obj in items {
        let key = key_of(&obj);
        let rv = rv_of(&obj);
        match known.get(&key) {
            None if first => {
                if rv > since.unwrap_or(0) {
                    events.push(("ADDED", obj.clone()));
                }
            }
            None => events.push(("ADDED", obj.clone())),
            Some((old, _)) if *old != rv => events.push(("MODIFIED", obj.clone())),
            Some(_) => {}
        }
        current.insert(key, (rv, obj));
    }
    for (key, (_, obj)) in known.iter() {
        if !current.contains_key(key) {
            events.push(("DELETED", obj.clone()));
        }
    }
    *known = current;
    events
}

/// A streaming body fed by a channel: ends when the sending task ends.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(uid: &str, rv: u64) -> Value {
        json!({ "metadata": { "uid": uid, "name": uid, "resourceVersion": rv.to_string() } })
    }

    fn kinds(events: &[(&'static str, Value)]) -> Vec<(&'static str, String)> {
        events.iter().map(|(k, o)| (*k, o["metadata"]["uid"].as_str().unwrap_or("").to_string())).collect()
    }

    #[test]
    fn first_round_announces_only_objects_newer_than_the_list() {
        let mut known = HashMap::new();
        let events = diff(&mut known, vec![obj("a", 3), obj("b", 9)], Some(5), true);
        assert_eq!(kinds(&events), vec![("ADDED", "b".to_string())]);
        let mut known = HashMap::new();
        let events = diff(&mut known, vec![obj("a", 3)], Some(0), true);
        assert_eq!(kinds(&events), vec![("ADDED", "a".to_string())]);
    }

    #[test]
    fn later_rounds_report_added_modified_deleted() {
        let mut known = HashMap::new();
        diff(&mut known, vec![obj("a", 1), obj("b", 2)], Some(0), true);
        let events = diff(&mut known, vec![obj("a", 4), obj("c", 5)], None, false);
        let mut got = kinds(&events);
        got.sort();
        assert_eq!(got, vec![("ADDED", "c".into()), ("DELETED", "b".into()), ("MODIFIED", "a".into())]);
        assert!(diff(&mut known, vec![obj("a", 4), obj("c", 5)], None, false).is_empty());
    }
}
