//! Each command end to end against an in-process kube-fake-client cluster
//! with the simulated kubelet: create → running, sleep → 0 replicas and
//! KEDA paused, wake → 1 replica and KEDA un-paused, delete → backup Job
//! ran and every object gone; bounded waits fail with a clear reason.
#![allow(clippy::unwrap_used)]

mod k8s_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_support::{Cluster, config, sid, target};
use kube::api::ListParams;
use proto_types::{DesiredState, SessionState};
use worker::executor::ExecError;
use worker::executor::Executor as _;
use worker::k8s::k8s_config::Routing;
use worker::k8s::keda::ScaledObject;
use worker::k8s::{K8sConfig, K8sExecutor, names};

async fn pods(c: &Cluster, id: &proto_types::SessionId) -> usize {
    let lp = ListParams::default().labels(&names::workspace_pod_selector(id));
    c.api::<Pod>().list(&lp).await.unwrap().items.len()
}

async fn paused(c: &Cluster, name: &str) -> bool {
    let so = c.api::<ScaledObject>().get(name).await.unwrap();
    worker::k8s::keda::is_paused(&so)
}

async fn replicas(c: &Cluster, name: &str) -> i32 {
    c.api::<Deployment>().get(name).await.unwrap().spec.unwrap().replicas.unwrap()
}

/// `WORKSPACE_ROUTING=ingress` keeps the seed's per-session Ingress;
/// switching back to `gateway` removes it at the next convergence.
#[tokio::test]
async fn ingress_routing_creates_the_ingress_and_gateway_routing_removes_it() {
    let cfg = K8sConfig { routing: Routing::Ingress, ..config() };
    let c = Cluster::with(None, cfg, true).await;
    let id = sid("0fa6debc");
    let ws = names::workspace(&id);
    c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    let ing = c.api::<Ingress>().get_opt(&ws).await.unwrap().expect("ingress routing applies an Ingress");
    let host = ing.spec.and_then(|s| s.rules).and_then(|r| r.into_iter().next()).and_then(|r| r.host);
    assert_eq!(host.as_deref(), Some("vs-code-0fa6debc.preview.example.com"));

    let gateway = K8sExecutor::new(c.raw.clone(), config());
    let out = gateway.converge(&target(&id, DesiredState::Running, 2)).await.unwrap();
    assert_eq!(out.status, SessionState::Running);
    assert!(c.api::<Ingress>().get_opt(&ws).await.unwrap().is_none(), "the leftover Ingress is deleted");
}

#[tokio::test]
async fn create_sleep_wake_delete_round_trip() {
    let c = Cluster::start().await;
    let id = sid("0fa6debc");
    let ws = names::workspace(&id);

    let out = c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    assert_eq!((out.status, out.replicas, out.backup_file.clone()), (SessionState::Running, 1, None));
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&id)).await.unwrap().is_some());
    assert!(c.api::<Service>().get_opt(&ws).await.unwrap().is_some());
    assert!(c.api::<Ingress>().get_opt(&ws).await.unwrap().is_none(), "gateway routing: no Ingress per session");
    assert!(!paused(&c, &ws).await);
    assert_eq!(replicas(&c, &ws).await, 1);
    assert_eq!(pods(&c, &id).await, 1);

    // Repeating create is a no-op that reports the same.
    let again = c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    assert_eq!(again, out);

    let out = c.converge(&target(&id, DesiredState::Sleeping, 2)).await.unwrap();
    assert_eq!((out.status, out.replicas), (SessionState::Sleeping, 0));
    assert_eq!(replicas(&c, &ws).await, 0);
    assert!(paused(&c, &ws).await, "KEDA must be pinned to 0 while asleep");
    assert_eq!(pods(&c, &id).await, 0);
    let so = c.api::<ScaledObject>().get(&ws).await.unwrap();
    assert_eq!(so.metadata.annotations.unwrap().get(names::PAUSED_REPLICAS).map(String::as_str), Some("0"));

    let out = c.converge(&target(&id, DesiredState::Running, 3)).await.unwrap();
    assert_eq!((out.status, out.replicas), (SessionState::Running, 1));
    assert_eq!(replicas(&c, &ws).await, 1);
    assert!(!paused(&c, &ws).await, "wake removes the paused-replicas annotation");
    assert_eq!(pods(&c, &id).await, 1);

    let out = c.converge(&target(&id, DesiredState::Deleted, 4)).await.unwrap();
    assert_eq!(out.status, SessionState::Deleted);
    let file = out.backup_file.expect("delete reports the backup file");
    assert!(file.starts_with("app-0fa6debc-") && file.ends_with(".zip"), "{file}");
    let job = c.api::<Job>().get(&names::backup_job(&id, 4)).await.unwrap();
    assert_eq!(worker::k8s::backup::file_of(&job).as_deref(), Some(file.as_str()));
    assert_eq!(worker::k8s::backup::outcome(&job), worker::k8s::backup::JobOutcome::Succeeded);
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&id)).await.unwrap().is_none());
    assert!(c.api::<Deployment>().get_opt(&ws).await.unwrap().is_none());
    assert!(c.api::<Service>().get_opt(&ws).await.unwrap().is_none());
    assert!(c.api::<Ingress>().get_opt(&ws).await.unwrap().is_none());
    assert!(c.api::<ScaledObject>().get_opt(&ws).await.unwrap().is_none());

    // Delete again: already gone, same file, nothing breaks.
    let again = c.converge(&target(&id, DesiredState::Deleted, 4)).await.unwrap();
    assert_eq!(again.backup_file.as_deref(), Some(file.as_str()));
}

#[tokio::test]
async fn scale_down_and_up_are_sleep_and_wake() {
    let c = Cluster::start().await;
    let id = sid("scale1");
    c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    let mut t = target(&id, DesiredState::Sleeping, 2);
    t.command = proto_types::Command::ScaleDown;
    assert_eq!(c.converge(&t).await.unwrap().status, SessionState::Sleeping);
    let mut t = target(&id, DesiredState::Running, 3);
    t.command = proto_types::Command::ScaleUp;
    assert_eq!(c.converge(&t).await.unwrap().replicas, 1);
}

#[tokio::test]
async fn sessions_do_not_touch_each_other() {
    let c = Cluster::start().await;
    let (a, b) = (sid("aaaa"), sid("bbbb"));
    c.converge(&target(&a, DesiredState::Running, 1)).await.unwrap();
    c.converge(&target(&b, DesiredState::Running, 1)).await.unwrap();
    c.converge(&target(&a, DesiredState::Sleeping, 2)).await.unwrap();
    assert_eq!(pods(&c, &a).await, 0);
    assert_eq!(pods(&c, &b).await, 1);
    c.converge(&target(&a, DesiredState::Deleted, 3)).await.unwrap();
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&b)).await.unwrap().is_some());
}

#[tokio::test]
async fn create_past_the_ready_bound_fails_with_a_reason() {
    let cfg = worker::k8s::K8sConfig { ready_timeout: Duration::from_millis(300), ..config() };
    let c = Cluster::with(None, cfg, false).await; // no kubelet: never ready
    let id = sid("slow1");
    let err = c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap_err();
    match err {
        ExecError::Permanent { message, status, .. } => {
            assert_eq!(status, SessionState::Failed);
            assert!(message.contains("did not become ready within"), "{message}");
            assert!(message.contains("ws-slow1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The objects stay; a later wake (with a working cluster) converges.
    let mut c = c;
    c.start_kubelet();
    let out = c.converge(&target(&id, DesiredState::Running, 2)).await.unwrap();
    assert_eq!(out.status, SessionState::Running);
}

#[tokio::test]
async fn sleep_waits_until_the_pod_is_gone() {
    let cfg = worker::k8s::K8sConfig { pod_gone_timeout: Duration::from_millis(300), ..config() };
    let mut c = Cluster::with(None, cfg, true).await;
    let id = sid("stuck1");
    c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    // Kubelet stops: the pod never goes away.
    c.kubelet_stop();
    let err = c.converge(&target(&id, DesiredState::Sleeping, 2)).await.unwrap_err();
    assert!(err.to_string().contains("still exist"), "{err}");
    c.start_kubelet();
    assert_eq!(c.converge(&target(&id, DesiredState::Sleeping, 2)).await.unwrap().status, SessionState::Sleeping);
}

/// `BACKUP_MODE=snapshot`: a delete takes a VolumeSnapshot (no Job), deletes nothing until it
/// is ready, and a snapshot that never becomes ready fails the delete with the volume kept;
/// deleting again once the snapshot controller works finishes with the snapshot as backup.
#[tokio::test]
async fn snapshot_mode_deletes_only_after_a_ready_snapshot() {
    use worker::k8s::k8s_config::BackupMode;
    use worker::k8s::snapshot::VolumeSnapshot;
    let cfg = K8sConfig { backup_mode: BackupMode::Snapshot, backup_timeout: Duration::from_millis(300), ..config() };
    let mut c = Cluster::with(None, cfg, true).await;
    let id = sid("0fa6debc");
    c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    c.converge(&target(&id, DesiredState::Sleeping, 2)).await.unwrap();

    // No snapshot controller: never ready.
    c.kubelet_stop();
    let err = c.converge(&target(&id, DesiredState::Deleted, 3)).await.unwrap_err();
    let snap = names::backup_snapshot(&id, 3);
    assert!(err.to_string().contains(&format!("volume snapshot {snap} was not ready to use within 0.3s")), "{err}");
    let ExecError::Permanent { backup: Some(failed), .. } = &err else { panic!("not a failed backup: {err:?}") };
    assert_eq!((failed.kind, failed.location.as_str()), (proto_types::BackupKind::Snapshot, snap.as_str()));
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&id)).await.unwrap().is_some(), "volume kept");
    let s = c.api::<VolumeSnapshot>().get(&snap).await.unwrap();
    assert_eq!(s.spec.source.persistent_volume_claim_name.as_deref(), Some(names::pvc(&id).as_str()));
    assert!(c.api::<Job>().list(&ListParams::default()).await.unwrap().items.is_empty(), "no backup Job");

    c.start_kubelet();
    let out = c.converge(&target(&id, DesiredState::Deleted, 3)).await.unwrap();
    assert_eq!(out.status, SessionState::Deleted);
    let archive = out.archive.expect("the ready snapshot is the backup");
    assert_eq!((archive.kind, archive.location.as_str()), (proto_types::BackupKind::Snapshot, snap.as_str()));
    assert_eq!(archive.size_bytes, 5 << 30, "its restoreSize: the claim's 5Gi");
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&id)).await.unwrap().is_none());
    assert!(c.api::<VolumeSnapshot>().get_opt(&snap).await.unwrap().is_some(), "the snapshot outlives the volume");
}
