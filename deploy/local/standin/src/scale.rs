//! The `/scale` subresource of Deployments (`kubectl scale`, HPA-style clients): an
//! `autoscaling/v1` Scale read from and written to the Deployment's `spec.replicas`. The fake
//! cluster does not know subresources other than `status`, so this adapter translates.

use crate::fake::Fake;
use crate::respond::{self, Body};
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{Value, json};

/// Answer GET/PATCH/PUT on `.../deployments/{name}/scale`.
pub(crate) async fn handle(
    handler: &Fake,
    method: &Method,
    path: &str,
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Response<Body> {
    let Some(deployment_path) = path.strip_suffix("/scale") else { return respond::not_found_path() };
    match *method {
        Method::GET => match handler.get_json(deployment_path).await {
            Ok(dep) => respond::json(StatusCode::OK, &scale_of(&dep)),
            Err(resp) => resp,
        },
        Method::PATCH | Method::PUT => {
            let json_patch = content_type.and_then(|c| c.to_str().ok()).is_some_and(|c| c.contains("json-patch"));
            let Some(replicas) = desired_replicas(body, json_patch) else {
                return respond::status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "spec.replicas: Required value");
            };
            let patch = Bytes::from(json!({ "spec": { "replicas": replicas } }).to_string());
            let merge = HeaderValue::from_static("application/merge-patch+json");
            match handler.send(Method::PATCH, deployment_path, Some(merge), patch).await {
                Ok((code, bytes)) if code.is_success() => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(dep) => respond::json(StatusCode::OK, &scale_of(&dep)),
                    Err(e) => respond::status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
                },
                Ok((code, bytes)) => respond::raw_json(code, bytes),
                Err(resp) => resp,
            }
        }
        _ => respond::status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "scale supports get, patch, update"),
    }
}

/// The Scale view of a Deployment.
pub(crate) fn scale_of(dep: &Value) -> Value {
    let meta = &dep["metadata"];
    let selector = dep["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": dep["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": { "replicas": dep["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}

/// `spec.replicas` asked for by a Scale body (object for merge/apply/update, RFC 6902 list for
/// JSON patch).
pub(crate) fn desired_replicas(body: &[u8], json_patch: bool) -> Option<i64> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if json_patch {
        value.as_array()?.iter().rev().find(|op| op["path"] == "/spec/replicas")?["value"].as_i64()
    } else {
        value["spec"]["replicas"].as_i64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reflects_the_deployment() {
        let dep = json!({
            "metadata": { "name": "ws", "namespace": "workspaces", "resourceVersion": "7" },
            "spec": { "replicas": 0, "selector": { "matchLabels": { "app": "ws" } } },
            "status": { "replicas": 1 }
        });
        let s = scale_of(&dep);
        assert_eq!(s["spec"]["replicas"], 0);
        assert_eq!(s["status"]["replicas"], 1);
        assert_eq!(s["status"]["selector"], "app=ws");
        assert_eq!(s["metadata"]["name"], "ws");
    }

    #[test]
    fn replicas_are_read_from_merge_and_json_patches() {
        assert_eq!(desired_replicas(br#"{"spec":{"replicas":3}}"#, false), Some(3));
        assert_eq!(desired_replicas(br#"[{"op":"replace","path":"/spec/replicas","value":0}]"#, true), Some(0));
        assert_eq!(desired_replicas(br#"{"spec":{}}"#, false), None);
    }
}
