//! Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`) built
//! from kube-fake-client's static discovery data plus the KEDA and CSI snapshot kinds, so that `kubectl` and
//! kube-rs' `Discovery` find every kind the fake can store.
//!
//! Pure: each function returns a JSON document; serving it is `handler.rs`'s job. Only the
//! `status` subresource is advertised (and served); `scale` is served for Deployments only.

use crate::{keda, snapshot};
use kube_fake_client::discovery::Discovery;
use serde_json::{Value, json};

/// Verbs a resource may support, in the order Kubernetes lists them.
const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// Resources in kubectl's `all` category (`kubectl get all`).
const IN_ALL: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("autoscaling", "horizontalpodautoscalers"),
];

/// One kind served by the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// API group, empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind name.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
}

/// Every kind served: the fake's static discovery data followed by the KEDA and snapshot kinds.
pub fn kinds() -> Vec<Kind> {
    let mut out: Vec<Kind> = Discovery::list_all_resources()
        .iter()
        .map(|(g, v, k, p)| Kind {
            group: (*g).to_string(),
            version: (*v).to_string(),
            kind: (*k).to_string(),
            plural: (*p).to_string(),
        })
        .collect();
    out.extend(keda::KINDS.iter().map(|(k, p, _, _)| Kind {
        group: keda::GROUP.to_string(),
        version: keda::VERSION.to_string(),
        kind: (*k).to_string(),
        plural: (*p).to_string(),
    }));
    out.extend(snapshot::KINDS.iter().map(|(k, p, ..)| Kind {
        group: snapshot::GROUP.to_string(),
        version: snapshot::VERSION.to_string(),
        kind: (*k).to_string(),
        plural: (*p).to_string(),
    }));
    out
}

/// `(singular, short names, namespaced)` of a KEDA or snapshot kind; `None` for the fake's own.
fn custom(group: &str, version: &str, kind: &str) -> Option<(&'static str, &'static [&'static str], bool)> {
    if group == keda::GROUP && version == keda::VERSION {
        return keda::KINDS.iter().find(|(k, ..)| *k == kind).map(|(_, _, s, shorts)| (*s, *shorts, true));
    }
    if group == snapshot::GROUP && version == snapshot::VERSION {
        return snapshot::KINDS.iter().find(|(k, ..)| *k == kind).map(|(_, _, s, shorts, ns)| (*s, *shorts, *ns));
    }
    None
}

/// Groups (non-core) with their versions, first version preferred, in first-seen order.
fn groups() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for k in kinds().into_iter().filter(|k| !k.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) if !versions.contains(&k.version) => versions.push(k.version),
            Some(_) => {}
            None => out.push((k.group, vec![k.version])),
        }
    }
    out
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-standin",
        "gitCommit": "standin",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }]
    })
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(group, versions)| {
            let gvs: Vec<Value> =
                versions.iter().map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v })).collect();
            json!({ "name": group, "versions": gvs, "preferredVersion": gvs[0].clone() })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/api/v1` or `/apis/{group}/{version}`; `None` if that group version is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<Kind> = kinds().into_iter().filter(|k| k.group == group && k.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in &served {
        let custom = custom(group, version, &k.kind);
        let (namespaced, singular, shorts, verbs): (bool, String, Vec<&str>, Vec<&str>) = match custom {
            Some((singular, shorts, namespaced)) => (namespaced, singular.to_string(), shorts.to_vec(), VERBS.to_vec()),
            None => (
                is_namespaced(group, version, &k.kind),
                singular_of(group, version, &k.kind),
                short_names_of(group, version, &k.kind),
                VERBS.iter().copied().filter(|verb| supports(group, version, &k.kind, verb)).collect(),
            ),
        };
        let categories: Vec<&str> = if IN_ALL.contains(&(group, k.plural.as_str())) { vec!["all"] } else { vec![] };
        resources.push(json!({
            "name": k.plural,
            "singularName": singular,
            "namespaced": namespaced,
            "kind": k.kind,
            "verbs": verbs,
            "shortNames": shorts,
            "categories": categories,
        }));
        if custom.is_none() && has_subresource(group, version, &k.kind, "status") {
            resources.push(json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": namespaced,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if group == "apps" && k.kind == "Deployment" {
            resources.push(json!({
                "name": "deployments/scale",
                "singularName": "",
                "namespaced": true,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn is_namespaced(group: &str, version: &str, kind: &str) -> bool {
    kube_fake_client::discovery::is_namespaced(group, version, kind).unwrap_or(true)
}

fn singular_of(group: &str, version: &str, kind: &str) -> String {
    kube_fake_client::discovery::get_singular(group, version, kind)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase())
}

fn short_names_of(group: &str, version: &str, kind: &str) -> Vec<&'static str> {
    kube_fake_client::discovery::get_short_names(group, version, kind).to_vec()
}

fn supports(group: &str, version: &str, kind: &str, verb: &str) -> bool {
    kube_fake_client::discovery::supports_verb(group, version, kind, verb)
}

fn has_subresource(group: &str, version: &str, kind: &str, sub: &str) -> bool {
    kube_fake_client::discovery::has_subresource(group, version, kind, sub)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(list: &Value) -> Vec<String> {
        list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn core_v1_lists_the_kinds_the_worker_uses() {
        let list = resource_list("", "v1").unwrap();
        let names = names(&list);
        for want in ["pods", "persistentvolumeclaims", "services", "namespaces", "secrets"] {
            assert!(names.contains(&want.to_string()), "{want} missing from {names:?}");
        }
        assert_eq!(list["groupVersion"], "v1");
    }

    #[test]
    fn apps_batch_networking_and_keda_are_served() {
        let apps = names(&resource_list("apps", "v1").unwrap());
        assert!(apps.contains(&"deployments".into()) && apps.contains(&"deployments/status".into()));
        assert!(apps.contains(&"deployments/scale".into()));
        assert!(names(&resource_list("batch", "v1").unwrap()).contains(&"jobs/status".into()));
        assert!(names(&resource_list("networking.k8s.io", "v1").unwrap()).contains(&"ingresses".into()));
        let keda = resource_list("keda.sh", "v1alpha1").unwrap();
        assert_eq!(names(&keda), vec!["scaledobjects", "triggerauthentications"]);
        assert_eq!(keda["resources"][0]["namespaced"], true);
        assert!(resource_list("nope.example", "v1").is_none());
        let snap = resource_list("snapshot.storage.k8s.io", "v1").unwrap();
        assert_eq!(names(&snap), vec!["volumesnapshots", "volumesnapshotclasses"]);
        assert_eq!(snap["resources"][0]["namespaced"], true);
        assert_eq!(snap["resources"][1]["namespaced"], false);
    }

    #[test]
    fn group_list_names_each_group_once_with_a_preferred_version() {
        let list = group_list();
        let groups = list["groups"].as_array().unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        for want in ["apps", "batch", "networking.k8s.io", "keda.sh", "snapshot.storage.k8s.io"] {
            assert_eq!(names.iter().filter(|n| **n == want).count(), 1, "{want} in {names:?}");
        }
        let keda = groups.iter().find(|g| g["name"] == "keda.sh").unwrap();
        assert_eq!(keda["preferredVersion"]["groupVersion"], "keda.sh/v1alpha1");
    }
}
