//! The stand-in served over HTTP, driven by a `kube::Client` built from the kubeconfig it wrote.
#![allow(clippy::unwrap_used)]

mod common;

use common::{raw_get, start};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions, WatchEvent, WatchParams};
use kube::discovery::Discovery;
use kube_standin::keda::ScaledObject;
use serde_json::json;
use std::time::Duration;

const NS: &str = "workspaces";
const MANAGER: &str = "session-manager";

fn deployment(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "session-uuid": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "session-uuid": name } },
            "template": {
                "metadata": { "labels": { "session-uuid": name } },
                "spec": { "containers": [{ "name": "code", "image": "codercom/code-server:4" }] }
            }
        }
    })
}

async fn apply(api: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(deployment(name, replicas))).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_applied_deployment_reads_back_and_keeps_its_status() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    let created = apply(&api, "ws-a", 1).await;
    assert!(created.metadata.uid.is_some());

    let got = api.get("ws-a").await.unwrap();
    assert_eq!(got.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(got.metadata.labels.unwrap()["session-uuid"], "ws-a");
    assert_eq!(got.metadata.namespace.as_deref(), Some(NS));

    // The status subresource is separate from the spec: a kubelet-style status write survives a
    // later spec apply, and the spec change is visible.
    let status = json!({ "status": { "replicas": 1, "readyReplicas": 1, "availableReplicas": 1 } });
    api.patch_status("ws-a", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    apply(&api, "ws-a", 0).await;
    let got = api.get("ws-a").await.unwrap();
    assert_eq!(got.spec.unwrap().replicas, Some(0));
    assert_eq!(got.status.unwrap().ready_replicas, Some(1));
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_object_applies_and_reads_back() {
    let h = start(|_, _| {}).await;
    let api: Api<ScaledObject> = Api::namespaced(h.client.clone(), NS);
    let spec = json!({
        "scaleTargetRef": { "name": "ws-a" },
        "minReplicaCount": 0,
        "maxReplicaCount": 1,
        "cooldownPeriod": 300,
        "triggers": [{ "type": "redis", "metadata": { "listName": "demand:ws-a" },
                       "authenticationRef": { "name": "ws-a" } }]
    });
    let mut so = ScaledObject::new("ws-a", NS, spec.clone());
    so.metadata.annotations = Some([("autoscaling.keda.sh/paused-replicas".to_string(), "0".to_string())].into());
    api.patch("ws-a", &PatchParams::apply(MANAGER).force(), &Patch::Apply(&so)).await.unwrap();

    let got = api.get("ws-a").await.unwrap();
    assert_eq!(got.spec, spec);
    assert_eq!(got.metadata.annotations.unwrap()["autoscaling.keda.sh/paused-replicas"], "0");
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_every_kind_the_worker_uses() {
    let h = start(|_, _| {}).await;
    let discovery = Discovery::new(h.client.clone()).run().await.unwrap();
    for group in ["", "apps", "batch", "networking.k8s.io", "keda.sh"] {
        assert!(discovery.has_group(group), "group {group:?} missing");
    }
    for (group, version, kind) in [
        ("", "v1", "PersistentVolumeClaim"),
        ("", "v1", "Service"),
        ("", "v1", "Pod"),
        ("apps", "v1", "Deployment"),
        ("batch", "v1", "Job"),
        ("networking.k8s.io", "v1", "Ingress"),
        ("keda.sh", "v1alpha1", "ScaledObject"),
        ("keda.sh", "v1alpha1", "TriggerAuthentication"),
    ] {
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (res, caps) = discovery.resolve_gvk(&gvk).unwrap_or_else(|| panic!("{kind} not discovered"));
        assert!(caps.supports_operation("patch"), "{kind} cannot be patched");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced, "{kind} scope");
        assert!(!res.plural.is_empty());
    }
    let (code, version) = raw_get(&h.client, "/version").await;
    assert_eq!((code, version["major"].as_str()), (200, Some("1")));
    let (code, apis) = raw_get(&h.client, "/apis").await;
    assert_eq!((code, apis["kind"].as_str()), (200, Some("APIGroupList")));
    let (code, _) = raw_get(&h.client, "/healthz").await;
    assert_eq!(code, 200);
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_answer_404_with_a_status_body() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    match api.get("nope").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 404);
            assert_eq!(status.reason, "NotFound");
        }
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let (code, body) = raw_get(&h.client, "/apis/apps/v1/namespaces/workspaces/deployments/nope").await;
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], 404);
    // Deleting what is not there is a 404 too (the worker treats it as success).
    match api.delete("nope", &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected a 404 Status, got {other:?}"),
    }
    let (code, body) = raw_get(&h.client, "/apis/nothing.example/v1/namespaces/x/things").await;
    assert_eq!((code, body["kind"].as_str()), (404, Some("Status")));
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_recording_writes_rbac_verbs_per_resource_request() {
    let h = start(|c, dir| c.record_calls = Some(dir.join("calls.txt"))).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    apply(&api, "ws-r", 1).await;
    api.get("ws-r").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    let status = json!({ "status": { "readyReplicas": 1 } });
    api.patch_status("ws-r", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    api.delete("ws-r", &DeleteParams::default()).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), NS);
    pvcs.list(&ListParams::default()).await.unwrap();
    Discovery::new(h.client.clone()).run().await.unwrap();
    // A test's own inspection, marked as an observer, is not evidence of the system's calls.
    let observe = http::Request::get("/api/v1/namespaces/workspaces/pods")
        .header(kube_standin::handler::OBSERVER_HEADER, "1")
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    assert_eq!(h.client.send(observe).await.unwrap().status(), 200);

    let lines: Vec<String> =
        std::fs::read_to_string(h.dir.path().join("calls.txt")).unwrap().lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "patch apps deployments",
            "get apps deployments",
            "list apps deployments",
            "patch apps deployments/status",
            "delete apps deployments",
            "list \"\" persistentvolumeclaims",
        ],
        "discovery must not be recorded"
    );
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_honours_the_uid_precondition() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    let uid = apply(&api, "ws-p", 1).await.metadata.uid.unwrap();
    let stale = DeleteParams {
        preconditions: Some(Preconditions { uid: Some("someone-else".into()), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete("ws-p", &stale).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("expected 409, got {other:?}"),
    }
    assert!(api.get_opt("ws-p").await.unwrap().is_some(), "object must survive a failed precondition");
    let current = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    api.delete("ws-p", &current).await.unwrap();
    assert!(api.get_opt("ws-p").await.unwrap().is_none());
    h.standin.shutdown().await;
}

/// The worker's write gate relies on these: an apply or merge patch carrying a
/// `metadata.resourceVersion` that is no longer current is a 409 and changes
/// nothing, and a delete with a stale `resourceVersion` precondition too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_honour_the_resource_version_precondition() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    let old = apply(&api, "ws-rv", 1).await.metadata.resource_version.unwrap();
    let now = apply(&api, "ws-rv", 2).await.metadata.resource_version.unwrap();
    assert_ne!(old, now);
    let mut stale = deployment("ws-rv", 0);
    stale["metadata"]["resourceVersion"] = json!(old);
    let pp = PatchParams::apply(MANAGER).force();
    match api.patch("ws-rv", &pp, &Patch::Apply(&stale)).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("expected 409 for a stale apply, got {other:?}"),
    }
    let merge = json!({"metadata": {"resourceVersion": old}, "spec": {"replicas": 0}});
    match api.patch("ws-rv", &PatchParams::default(), &Patch::Merge(&merge)).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("expected 409 for a stale merge patch, got {other:?}"),
    }
    assert_eq!(api.get("ws-rv").await.unwrap().spec.unwrap().replicas, Some(2), "nothing changed");
    let stale_delete = DeleteParams {
        preconditions: Some(Preconditions { uid: None, resource_version: Some(old) }),
        ..DeleteParams::default()
    };
    match api.delete("ws-rv", &stale_delete).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("expected 409 for a stale delete, got {other:?}"),
    }
    let mut current = deployment("ws-rv", 0);
    current["metadata"]["resourceVersion"] = json!(now);
    api.patch("ws-rv", &pp, &Patch::Apply(&current)).await.unwrap();
    assert_eq!(api.get("ws-rv").await.unwrap().spec.unwrap().replicas, Some(0));
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_the_first_requests_then_pass() {
    // 500: kube's default client retry policy resends 429/503/504 by itself, hiding them.
    let h = start(|c, _| c.faults = kube_standin::FaultPlan { count: 2, status: 500 }).await;
    let path = "/apis/apps/v1/namespaces/workspaces/deployments";
    // Discovery is never failed.
    assert_eq!(raw_get(&h.client, "/apis").await.0, 200);
    let (code, body) = raw_get(&h.client, path).await;
    assert_eq!((code, body["reason"].as_str()), (500, Some("InternalError")));
    assert_eq!(raw_get(&h.client, path).await.0, 500);
    assert_eq!(raw_get(&h.client, path).await.0, 200);
    h.standin.faults().arm(1);
    assert_eq!(raw_get(&h.client, path).await.0, 500);
    assert_eq!(raw_get(&h.client, path).await.0, 200);
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_exist_and_are_created_on_first_write() {
    let h = start(|_, _| {}).await;
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    assert!(namespaces.get_opt(NS).await.unwrap().is_some());
    assert!(namespaces.get_opt("elsewhere").await.unwrap().is_none());
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "elsewhere");
    apply(&api, "ws-n", 1).await;
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"elsewhere".to_string()) && names.contains(&NS.to_string()), "{names:?}");
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_subresource_reads_and_sets_replicas() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    apply(&api, "ws-s", 1).await;
    assert_eq!(api.get_scale("ws-s").await.unwrap().spec.unwrap().replicas, Some(1));
    let patch = json!({ "spec": { "replicas": 0 } });
    api.patch_scale("ws-s", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert_eq!(api.get("ws-s").await.unwrap().spec.unwrap().replicas, Some(0));
    h.standin.shutdown().await;
}

async fn next_event<S>(s: &mut S) -> Option<WatchEvent<Deployment>>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<Deployment>>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(30), s.try_next()).await.expect("watch event in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_changes_and_ends_on_shutdown() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    apply(&api, "ws-old", 1).await;
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let stream = api.watch(&WatchParams::default().timeout(60), &rv).await.unwrap();
    let mut stream = Box::pin(stream);

    apply(&api, "ws-w", 1).await;
    match next_event(&mut stream).await {
        Some(WatchEvent::Added(d)) => {
            assert_eq!(d.metadata.name.as_deref(), Some("ws-w"), "only changes after the list")
        }
        other => panic!("expected Added, got {other:?}"),
    }
    api.delete("ws-w", &DeleteParams::default()).await.unwrap();
    match next_event(&mut stream).await {
        Some(WatchEvent::Deleted(d)) => assert_eq!(d.metadata.name.as_deref(), Some("ws-w")),
        other => panic!("expected Deleted, got {other:?}"),
    }
    // Shutdown ends open watches instead of hanging on them.
    tokio::time::timeout(Duration::from_secs(30), h.standin.shutdown()).await.expect("shutdown in time");
    let rest = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("stream ends");
    assert!(rest.is_none() || rest.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_kubelet_makes_managed_deployments_ready_then_removes_their_pods() {
    let h = start(|c, _| {
        c.kubelet.mode = kube_standin::KubeletMode::Simulated;
        c.kubelet.delay = Duration::from_millis(50);
    })
    .await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), NS);
    let mut dep = deployment("ws-k", 1);
    dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("session-manager");
    api.patch("ws-k", &PatchParams::apply(MANAGER).force(), &Patch::Apply(&dep)).await.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(h.client.clone(), NS);
    let by_session = ListParams::default().labels("session-uuid=ws-k");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = api.get("ws-k").await.unwrap().status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready == 1 && pods.list(&by_session).await.unwrap().items.len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deployment never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    apply(&api, "ws-k", 0).await; // drops the managed-by label too: the fake keeps old fields
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !pods.list(&by_session).await.unwrap().items.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "pods never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), h.standin.shutdown()).await.expect("shutdown stops the kubelet");
}
