//! Pod logs of the process kubelet: each pod's stdout and stderr are appended to
//! `<dir>/<namespace>_<pod>.log`, and the `log` subresource (`kubectl logs`) serves that file
//! as plain text for a pod that exists. Options such as `follow` or `tailLines` are ignored:
//! the whole file is returned.

use crate::respond::{self, Body};
use http::{HeaderValue, Response, StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use std::path::{Path, PathBuf};

/// Where pod logs live.
#[derive(Debug, Clone)]
pub struct PodLogs {
    dir: PathBuf,
}

impl PodLogs {
    /// Logs under `dir` (made absolute against the current directory).
    pub fn new(dir: &Path) -> Self {
        Self { dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()) }
    }

    /// The log file of pod `ns/pod`.
    pub fn path(&self, ns: &str, pod: &str) -> PathBuf {
        self.dir.join(format!("{ns}_{pod}.log"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Answers `GET .../pods/{pod}/log`: 404 for an unknown pod, else the file (empty when the
    /// pod has not written anything yet).
    pub async fn serve(&self, client: &kube::Client, ns: &str, pod: &str) -> Response<Body> {
        match Api::<Pod>::namespaced(client.clone(), ns).get_opt(pod).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return respond::status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{pod}\" not found"));
            }
            Err(e) => return respond::status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
        }
        // A small local file: read it in place.
        let text = std::fs::read(self.path(ns, pod)).unwrap_or_default();
        let mut resp = Response::new(respond::full(text));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        resp
    }
}
