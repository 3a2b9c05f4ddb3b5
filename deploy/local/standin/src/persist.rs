//! The stand-in's objects on disk (`STANDIN_STATE_FILE`), so `make run` can stop and start
//! again with the cluster it had: every object of the kinds the session manager writes, and
//! the namespaces, as one JSON document, written atomically (temporary file, then rename)
//! shortly after writes and at shutdown, and loaded at start.
//!
//! Pods are not kept: they are the kubelet's to make, and it makes them again from the
//! Deployments (and their processes with them). Loaded objects keep their uid, labels,
//! managed fields and status; they get fresh resource versions.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The collections kept: (list path, apiVersion, kind).
const KINDS: &[(&str, &str, &str)] = &[
    ("/apis/apps/v1/deployments", "apps/v1", "Deployment"),
    ("/apis/batch/v1/jobs", "batch/v1", "Job"),
    ("/api/v1/services", "v1", "Service"),
    ("/api/v1/persistentvolumeclaims", "v1", "PersistentVolumeClaim"),
    ("/api/v1/configmaps", "v1", "ConfigMap"),
    ("/api/v1/secrets", "v1", "Secret"),
    ("/apis/networking.k8s.io/v1/ingresses", "networking.k8s.io/v1", "Ingress"),
    ("/apis/keda.sh/v1alpha1/scaledobjects", "keda.sh/v1alpha1", "ScaledObject"),
    ("/apis/keda.sh/v1alpha1/triggerauthentications", "keda.sh/v1alpha1", "TriggerAuthentication"),
    ("/apis/snapshot.storage.k8s.io/v1/volumesnapshots", "snapshot.storage.k8s.io/v1", "VolumeSnapshot"),
    ("/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses", "snapshot.storage.k8s.io/v1", "VolumeSnapshotClass"),
];

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state document.
    #[error("state file {path} is not valid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Listing the cluster failed.
    #[error("listing {what}: {source}")]
    List {
        /// The collection.
        what: String,
        /// The cause.
        #[source]
        source: Box<kube::Error>,
    },
}

/// What a state file holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct State {
    /// Objects with `apiVersion` and `kind` set.
    pub objects: Vec<Value>,
    /// Namespace names.
    pub namespaces: Vec<String>,
}

/// Loads `path`; a missing file is an empty state.
pub fn load(path: &Path) -> Result<State, PersistError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => return Err(PersistError::Io { path: path.to_owned(), source }),
    };
    let doc: Value =
        serde_json::from_slice(&text).map_err(|source| PersistError::Parse { path: path.to_owned(), source })?;
    let mut objects: Vec<Value> = doc["objects"].as_array().cloned().unwrap_or_default();
    for o in &mut objects {
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
    }
    let namespaces =
        doc["namespaces"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_owned)).collect();
    Ok(State { objects, namespaces })
}

/// Reads every kept object from `client`.
pub async fn snapshot(client: &kube::Client, namespaces: Vec<String>) -> Result<State, PersistError> {
    let mut objects = Vec::new();
    for (path, api_version, kind) in KINDS {
        let req = Request::builder().method(Method::GET).uri(*path).body(kube::client::Body::from(Bytes::new()));
        let req = req.expect("a GET of a fixed path is a valid request");
        let fail = |source| PersistError::List { what: (*path).to_owned(), source: Box::new(source) };
        let resp = client.send(req).await.map_err(fail)?;
        let bytes = resp.into_body().collect().await.map_err(|e| fail(kube::Error::Service(Box::new(e))))?.to_bytes();
        let list: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            item["apiVersion"] = json!(api_version);
            item["kind"] = json!(kind);
            objects.push(item);
        }
    }
    Ok(State { objects, namespaces })
}

/// Writes `state` to `path` atomically.
pub fn save(path: &Path, state: &State) -> Result<(), PersistError> {
    let io = |source| PersistError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let doc = json!({"objects": state.objects, "namespaces": state.namespaces});
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_saved_state_loads_back_without_resource_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/state.json");
        assert_eq!(load(&path).unwrap(), State::default(), "no file: empty");
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "uid": "u1", "resourceVersion": "7"}});
        save(&path, &State { objects: vec![obj], namespaces: vec!["workspaces".into()] }).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.namespaces, ["workspaces"]);
        assert_eq!(back.objects[0]["metadata"], json!({"name": "a", "uid": "u1"}));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(load(&path), Err(PersistError::Parse { .. })));
    }
}
