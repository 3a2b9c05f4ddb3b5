//! Request routing for the stand-in API server: a pure parse of method + path + query into a
//! [`Route`], plus the Kubernetes RBAC verb of each resource request.
//!
//! This module decides *what* a request is; it does no I/O and knows nothing about the fake
//! cluster behind it (see `handler.rs` for that).

use http::Method;

/// What an incoming request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`, `/readyz`, `/livez`.
    Health,
    /// `/version`.
    Version,
    /// `/api`: the core API versions.
    CoreVersions,
    /// `/apis`: the API group list.
    GroupList,
    /// `/api/v1` or `/apis/{group}/{version}`: the resource list of one group version.
    ResourceList {
        /// API group, empty for core.
        group: String,
        /// API version.
        version: String,
    },
    /// A request on a resource (collection, object or subresource).
    Resource(ResourceRequest),
    /// Anything else (answered 404).
    Unknown,
}

/// A parsed resource request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource name (`deployments`).
    pub resource: String,
    /// Object name, if the request targets one object.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`), if any.
    pub subresource: Option<String>,
    /// `?watch=true` (or `watch=1`) was given.
    pub watch: bool,
}

impl ResourceRequest {
    /// The RBAC verb Kubernetes would authorize this request against.
    pub fn rbac_verb(&self, method: &Method) -> &'static str {
        let one = self.name.is_some();
        match *method {
            Method::GET | Method::HEAD if self.watch => "watch",
            Method::GET | Method::HEAD if one => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if one => "delete",
            Method::DELETE => "deletecollection",
            _ => "unknown",
        }
    }

    /// `resource` or `resource/subresource`, as RBAC rules spell it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{}", self.resource, sub),
            None => self.resource.clone(),
        }
    }

    /// One call-record line: `VERB GROUP RESOURCE[/SUBRESOURCE]`, the core group written `""`.
    pub fn record_line(&self, method: &Method) -> String {
        let group = if self.group.is_empty() { "\"\"" } else { self.group.as_str() };
        format!("{} {} {}", self.rbac_verb(method), group, self.rbac_resource())
    }
}

/// Parse a request path and query into a [`Route`].
pub fn parse(path: &str, query: Option<&str>) -> Route {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::GroupList,
        ["api", version] => Route::ResourceList { group: String::new(), version: (*version).to_string() },
        ["apis", group, version] => {
            Route::ResourceList { group: (*group).to_string(), version: (*version).to_string() }
        }
        ["api", version, rest @ ..] => resource(String::new(), version, rest, query),
        ["apis", group, version, rest @ ..] => resource((*group).to_string(), version, rest, query),
        _ => Route::Unknown,
    }
}

fn resource(group: String, version: &str, rest: &[&str], query: Option<&str>) -> Route {
    // `namespaces/{ns}/{resource}...` is namespaced, unless it is the namespace object itself
    // (`namespaces/{ns}` or `namespaces/{ns}/status`).
    let (namespace, rest) = match rest {
        ["namespaces", ns, res, tail @ ..] if !(group.is_empty() && *res == "status" && tail.is_empty()) => {
            (Some((*ns).to_string()), {
                let mut v = vec![*res];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [res] => (*res, None, None),
        [res, name] => (*res, Some((*name).to_string()), None),
        [res, name, sub] => (*res, Some((*name).to_string()), Some((*sub).to_string())),
        _ => return Route::Unknown,
    };
    Route::Resource(ResourceRequest {
        group,
        version: version.to_string(),
        namespace,
        resource: resource.to_string(),
        name,
        subresource,
        watch: is_watch(query),
    })
}

fn is_watch(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|pair| matches!(pair, "watch" | "watch=true" | "watch=1" | "watch=True"))
}

/// Value of one query parameter (not percent-decoded beyond `%2C`/`%3D`/`%2F`, enough for our use).
pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn res(path: &str, query: Option<&str>) -> ResourceRequest {
        match parse(path, query) {
            Route::Resource(r) => r,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn discovery_paths_are_recognised() {
        assert_eq!(parse("/version", None), Route::Version);
        assert_eq!(parse("/api", None), Route::CoreVersions);
        assert_eq!(parse("/apis/", None), Route::GroupList);
        assert_eq!(parse("/healthz", None), Route::Health);
        assert_eq!(parse("/readyz/ping", None), Route::Health);
        assert_eq!(parse("/api/v1", None), Route::ResourceList { group: "".into(), version: "v1".into() });
        assert_eq!(
            parse("/apis/keda.sh/v1alpha1", None),
            Route::ResourceList { group: "keda.sh".into(), version: "v1alpha1".into() }
        );
        assert_eq!(parse("/openapi/v2", None), Route::Unknown);
    }

    #[test]
    fn namespaced_object_with_subresource() {
        let r = res("/apis/apps/v1/namespaces/workspaces/deployments/ws-1/status", None);
        assert_eq!(r.group, "apps");
        assert_eq!(r.namespace.as_deref(), Some("workspaces"));
        assert_eq!(r.resource, "deployments");
        assert_eq!(r.name.as_deref(), Some("ws-1"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(r.record_line(&Method::PATCH), "patch apps deployments/status");
    }

    #[test]
    fn namespace_objects_are_cluster_scoped() {
        let r = res("/api/v1/namespaces/workspaces", None);
        assert_eq!(r.namespace, None);
        assert_eq!(r.resource, "namespaces");
        assert_eq!(r.name.as_deref(), Some("workspaces"));
        let r = res("/api/v1/namespaces", None);
        assert_eq!(r.record_line(&Method::GET), "list \"\" namespaces");
    }

    #[test]
    fn rbac_verbs_follow_kubernetes() {
        let one = res("/api/v1/namespaces/w/pods/p", None);
        let all = res("/api/v1/namespaces/w/pods", None);
        let watch = res("/api/v1/namespaces/w/pods", Some("labelSelector=a%3Db&watch=true"));
        assert_eq!(one.rbac_verb(&Method::GET), "get");
        assert_eq!(all.rbac_verb(&Method::GET), "list");
        assert_eq!(watch.rbac_verb(&Method::GET), "watch");
        assert_eq!(all.rbac_verb(&Method::POST), "create");
        assert_eq!(one.rbac_verb(&Method::PUT), "update");
        assert_eq!(one.rbac_verb(&Method::PATCH), "patch");
        assert_eq!(one.rbac_verb(&Method::DELETE), "delete");
        assert_eq!(all.rbac_verb(&Method::DELETE), "deletecollection");
        assert_eq!(one.record_line(&Method::DELETE), "delete \"\" pods");
    }

    #[test]
    fn query_params_are_found() {
        assert_eq!(query_param(Some("a=1&timeoutSeconds=30"), "timeoutSeconds"), Some("30"));
        assert_eq!(query_param(Some("a=1"), "b"), None);
        assert_eq!(query_param(None, "b"), None);
    }
}
