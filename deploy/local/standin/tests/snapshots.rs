//! The CSI snapshot kinds served over HTTP, and the simulated kubelet making snapshots ready.
#![allow(clippy::unwrap_used)]

mod common;

use common::{raw_get, start};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::discovery::Discovery;
use kube_standin::snapshot::{VolumeSnapshot, VolumeSnapshotClass};
use serde_json::json;
use std::time::Duration;

const NS: &str = "workspaces";

fn claim(name: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "2Gi" } } }
    }))
    .unwrap()
}

/// Polls `api.get(name)` (a write-driven pass, no fixed sleep decides) until `done` holds.
async fn until(api: &Api<VolumeSnapshot>, name: &str, done: impl Fn(&VolumeSnapshot) -> bool) -> VolumeSnapshot {
    for _ in 0..200 {
        if let Some(s) = api.get_opt(name).await.unwrap()
            && done(&s)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("snapshot {name} never reached the wanted status: {:?}", api.get_opt(name).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_the_snapshot_kinds() {
    let h = start(|_, _| {}).await;
    let (code, groups) = raw_get(&h.client, "/apis").await;
    assert_eq!(code, 200);
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "snapshot.storage.k8s.io"));
    let discovery = Discovery::new(h.client.clone()).run().await.unwrap();
    let group = discovery.get("snapshot.storage.k8s.io").unwrap();
    let kinds: Vec<(String, bool)> = group
        .recommended_resources()
        .into_iter()
        .map(|(r, caps)| (r.kind, caps.scope == kube::discovery::Scope::Namespaced))
        .collect();
    assert!(kinds.contains(&("VolumeSnapshot".into(), true)), "{kinds:?}");
    assert!(kinds.contains(&("VolumeSnapshotClass".into(), false)), "{kinds:?}");
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_kinds_create_get_list_patch_and_delete() {
    let h = start(|_, _| {}).await;
    let classes: Api<VolumeSnapshotClass> = Api::all(h.client.clone());
    let class = VolumeSnapshotClass {
        metadata: kube::api::ObjectMeta { name: Some("local".into()), ..Default::default() },
        driver: "standin.local".into(),
        deletion_policy: "Delete".into(),
        ..Default::default()
    };
    classes.create(&PostParams::default(), &class).await.unwrap();
    assert_eq!(classes.get("local").await.unwrap().driver, "standin.local");
    assert_eq!(classes.list(&ListParams::default()).await.unwrap().items.len(), 1);

    let api: Api<VolumeSnapshot> = Api::namespaced(h.client.clone(), NS);
    api.create(&PostParams::default(), &VolumeSnapshot::of_claim("s1", NS, "data")).await.unwrap();
    let patch = json!({ "metadata": { "labels": { "a": "b" } } });
    api.patch("s1", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let got = api.get("s1").await.unwrap();
    assert_eq!(got.source_claim(), Some("data"));
    assert_eq!(got.metadata.labels.unwrap()["a"], "b");
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
    api.delete("s1", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("s1").await.unwrap().is_none());
    classes.delete("local", &DeleteParams::default()).await.unwrap();
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_kubelet_makes_a_snapshot_of_an_existing_claim_ready_and_reports_a_missing_one() {
    let h = start(|c, _| {
        c.kubelet.mode = kube_standin::KubeletMode::Simulated;
        c.kubelet.delay = Duration::from_millis(50);
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), NS);
    claims.create(&PostParams::default(), &claim("data")).await.unwrap();
    let api: Api<VolumeSnapshot> = Api::namespaced(h.client.clone(), NS);
    api.create(&PostParams::default(), &VolumeSnapshot::of_claim("s1", NS, "data")).await.unwrap();
    api.create(&PostParams::default(), &VolumeSnapshot::of_claim("s2", NS, "gone")).await.unwrap();

    let ready = until(&api, "s1", VolumeSnapshot::ready).await;
    assert_eq!(ready.status["restoreSize"], "2Gi");
    assert!(ready.status["creationTime"].is_string());
    assert!(ready.status["boundVolumeSnapshotContentName"].as_str().unwrap().starts_with("snapcontent-"));

    let missing = until(&api, "s2", |s| s.status["error"]["message"].is_string()).await;
    assert_eq!(missing.status["readyToUse"], false);
    assert!(missing.status["error"]["message"].as_str().unwrap().contains("gone"), "{:?}", missing.status);

    // The claim appearing later makes the failed snapshot ready.
    claims.create(&PostParams::default(), &claim("gone")).await.unwrap();
    until(&api, "s2", VolumeSnapshot::ready).await;
    h.standin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_volume_snapshots_sees_them_added_and_deleted() {
    let h = start(|_, _| {}).await;
    let api: Api<VolumeSnapshot> = Api::namespaced(h.client.clone(), NS);
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = Box::pin(api.watch(&WatchParams::default().timeout(60), &rv).await.unwrap());
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), stream.try_next()).await.expect("watch event in time").unwrap()
    };
    api.create(&PostParams::default(), &VolumeSnapshot::of_claim("w1", NS, "data")).await.unwrap();
    match next().await {
        Some(WatchEvent::Added(s)) => assert_eq!(s.metadata.name.as_deref(), Some("w1")),
        other => panic!("expected Added, got {other:?}"),
    }
    api.delete("w1", &DeleteParams::default()).await.unwrap();
    match next().await {
        Some(WatchEvent::Deleted(s)) => assert_eq!(s.metadata.name.as_deref(), Some("w1")),
        other => panic!("expected Deleted, got {other:?}"),
    }
    h.standin.shutdown().await;
}
