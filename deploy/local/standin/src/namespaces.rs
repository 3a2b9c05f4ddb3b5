//! Namespaces, kept by the stand-in itself: kube-fake-client cannot route the cluster-scoped
//! `/api/v1/namespaces[/{name}]` paths (it reads `namespaces/` as a namespaced prefix), so this
//! small store answers them. Namespaces are created at start from the config and on the first
//! write into a namespace, so clients never have to create `workspaces` themselves.
//!
//! Deleting a namespace does not delete its objects (no namespace controller here).

use crate::respond::{self, Body};
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The namespaces that exist.
#[derive(Debug)]
pub struct Namespaces {
    items: Mutex<BTreeMap<String, Value>>,
    next: AtomicU64,
}

impl Namespaces {
    /// A store holding `names` (plus `default` and `kube-system`).
    pub fn new(names: &[String]) -> Self {
        let store = Self { items: Mutex::new(BTreeMap::new()), next: AtomicU64::new(1) };
        for name in ["default", "kube-system"].into_iter().chain(names.iter().map(String::as_str)) {
            store.ensure(name);
        }
        store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn object(&self, name: &str, labels: Option<&Value>) -> Value {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let mut labels = labels.cloned().unwrap_or_else(|| json!({}));
        labels["kubernetes.io/metadata.name"] = json!(name);
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": format!("00000000-0000-4000-8000-{n:012x}"),
                "resourceVersion": n.to_string(),
                "creationTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "labels": labels,
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        })
    }

    /// Create `name` unless it exists.
    pub fn ensure(&self, name: &str) {
        let mut items = self.lock();
        if !items.contains_key(name) {
            let obj = self.object(name, None);
            items.insert(name.to_string(), obj);
        }
    }

    /// Every namespace object, by name.
    pub fn list(&self) -> Vec<Value> {
        self.lock().values().cloned().collect()
    }

    /// Whether `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Answer a request on `/api/v1/namespaces[/{name}]`.
    pub fn handle(&self, method: &Method, name: Option<&str>, body: &[u8]) -> Response<Body> {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let body_name = parsed.as_ref().and_then(|v| v["metadata"]["name"].as_str()).map(str::to_string);
        let labels = parsed.as_ref().map(|v| &v["metadata"]["labels"]).filter(|l| l.is_object());
        let mut items = self.lock();
        match (method, name) {
            (&Method::GET, None) => {
                let list: Vec<&Value> = items.values().collect();
                respond::json(
                    StatusCode::OK,
                    &json!({ "kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": list }),
                )
            }
            (&Method::GET, Some(n)) => match items.get(n) {
                Some(obj) => respond::json(StatusCode::OK, obj),
                None => not_found(n),
            },
            (&Method::POST, None) => match body_name {
                None => respond::status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "metadata.name: Required value"),
                Some(n) if items.contains_key(&n) => respond::status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("namespaces \"{n}\" already exists"),
                ),
                Some(n) => {
                    let obj = self.object(&n, labels);
                    items.insert(n, obj.clone());
                    respond::json(StatusCode::CREATED, &obj)
                }
            },
            (&Method::PATCH | &Method::PUT, Some(n)) => {
                let obj = match items.get(n) {
                    Some(existing) => {
                        let mut obj = existing.clone();
                        if let Some(Value::Object(new)) = labels {
                            for (k, v) in new {
                                obj["metadata"]["labels"][k] = v.clone();
                            }
                        }
                        obj
                    }
                    None => self.object(n, labels),
                };
                items.insert(n.to_string(), obj.clone());
                respond::json(StatusCode::OK, &obj)
            }
            (&Method::DELETE, Some(n)) => match items.remove(n) {
                Some(obj) => respond::json(StatusCode::OK, &obj),
                None => not_found(n),
            },
            _ => {
                respond::status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed on namespaces")
            }
        }
    }
}

fn not_found(name: &str) -> Response<Body> {
    respond::status(StatusCode::NOT_FOUND, "NotFound", &format!("namespaces \"{name}\" not found"))
}
