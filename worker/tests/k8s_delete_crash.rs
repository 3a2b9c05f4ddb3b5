//! Every crash point of delete: the executor is stopped after its k-th
//! write (every later call fails, as if the worker died), then a fresh run
//! converges. The end state is always the same: backup taken once, every
//! object gone. And a failed backup keeps the volume; deleting again retries.
#![allow(clippy::unwrap_used)]

mod k8s_support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_support::{Cluster, Fault, config, sid, target};
use kube::api::ListParams;
use proto_types::{DesiredState, SessionState};
use worker::executor::ExecError;
use worker::k8s::k8s_config::Routing;
use worker::k8s::keda::ScaledObject;
use worker::k8s::{K8sConfig, names};

async fn assert_all_gone(c: &Cluster, id: &proto_types::SessionId) {
    let ws = names::workspace(id);
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(id)).await.unwrap().is_none());
    assert!(c.api::<Deployment>().get_opt(&ws).await.unwrap().is_none());
    assert!(c.api::<Service>().get_opt(&ws).await.unwrap().is_none());
    assert!(c.api::<Ingress>().get_opt(&ws).await.unwrap().is_none());
    assert!(c.api::<ScaledObject>().get_opt(&ws).await.unwrap().is_none());
}

/// Writes of a full delete from running: pause, scale 0, backup Job,
/// 3 deletes (4 with an Ingress), PVC delete = 7 (8 with `ingress` routing).
const DELETE_WRITES: [(Routing, usize); 2] = [(Routing::Gateway, 7), (Routing::Ingress, 8)];

#[tokio::test]
async fn delete_converges_from_every_crash_point() {
    for (routing, writes) in DELETE_WRITES {
        delete_from_every_crash_point(routing, writes).await;
    }
}

async fn delete_from_every_crash_point(routing: Routing, delete_writes: usize) {
    for k in 0..=delete_writes {
        let c = Cluster::with(None, K8sConfig { routing, ..config() }, true).await;
        let id = sid("crash1");
        c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();

        c.faults.set(Some(Fault::CrashAfterWrites { k }));
        let first = c.converge(&target(&id, DesiredState::Deleted, 2)).await;
        let crashed = first.is_err();
        if k < delete_writes {
            let e = first.unwrap_err();
            assert!(e.is_retryable(), "{routing:?} k={k}: a crash must be retryable: {e}");
        } else {
            assert!(first.is_ok(), "{routing:?}: a delete takes exactly {delete_writes} writes: {first:?}");
        }
        c.faults.set(None);

        let out = c.converge(&target(&id, DesiredState::Deleted, 2)).await.unwrap();
        assert_eq!(out.status, SessionState::Deleted, "k={k}");
        assert!(out.backup_file.is_some(), "k={k} crashed={crashed}");
        assert_all_gone(&c, &id).await;
        // Exactly one backup Job, and it names the reported file.
        let jobs = c.api::<Job>().list(&ListParams::default()).await.unwrap().items;
        assert_eq!(jobs.len(), 1, "k={k}");
        assert_eq!(worker::k8s::backup::file_of(&jobs[0]), out.backup_file, "k={k}");
    }
}

#[tokio::test]
async fn create_converges_from_every_crash_point() {
    for k in 0..5 {
        let c = Cluster::start().await;
        let id = sid("crash2");
        c.faults.set(Some(Fault::CrashAfterWrites { k }));
        assert!(c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap_err().is_retryable());
        c.faults.set(None);
        let out = c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
        assert_eq!((out.status, out.replicas), (SessionState::Running, 1), "k={k}");
    }
}

#[tokio::test]
async fn failed_backup_keeps_the_volume_and_delete_again_retries() {
    let c = Cluster::start().await;
    let id = sid("bkfail");
    c.converge(&target(&id, DesiredState::Running, 1)).await.unwrap();
    c.kubelet.set_fail_backups(true);

    let err = c.converge(&target(&id, DesiredState::Deleted, 2)).await.unwrap_err();
    match &err {
        ExecError::Permanent { message, status, backup, .. } => {
            assert_eq!(*status, SessionState::Failed);
            assert!(message.contains("backup failed") && message.contains("volume kept"), "{message}");
            let failed = backup.as_deref().expect("the failed backup is named, to be recorded as failed");
            assert_eq!(failed.id, names::backup_id(&id, 2));
            let job2 = c.api::<Job>().get(&names::backup_job(&id, 2)).await.unwrap();
            assert_eq!(Some(&failed.location), worker::k8s::backup::file_of(&job2).as_ref());
        }
        other => panic!("{other:?}"),
    }
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&id)).await.unwrap().is_some());
    assert!(c.api::<Deployment>().get_opt(&names::workspace(&id)).await.unwrap().is_some());
    // Redelivering the same request does not pretend otherwise.
    assert!(!c.converge(&target(&id, DesiredState::Deleted, 2)).await.unwrap_err().is_retryable());
    assert!(c.api::<PersistentVolumeClaim>().get_opt(&names::pvc(&id)).await.unwrap().is_some());

    // The user deletes again (new generation): a new backup Job, and this time it works.
    c.kubelet.set_fail_backups(false);
    let out = c.converge(&target(&id, DesiredState::Deleted, 3)).await.unwrap();
    assert_eq!(out.status, SessionState::Deleted);
    let archive = out.archive.as_ref().expect("a verified archive is reported");
    assert_eq!(archive.id, names::backup_id(&id, 3));
    assert_eq!(archive.sha256.len(), 64, "{archive:?}");
    assert_all_gone(&c, &id).await;
    assert!(c.api::<Job>().get_opt(&names::backup_job(&id, 2)).await.unwrap().is_some());
    let job3 = c.api::<Job>().get(&names::backup_job(&id, 3)).await.unwrap();
    assert_eq!(worker::k8s::backup::file_of(&job3), out.backup_file);
}

#[tokio::test]
async fn the_backup_file_name_is_fixed_when_the_job_is_first_created() {
    let mut c = Cluster::start().await;
    let id = sid("stamp1");
    c.converge(&target(&id, DesiredState::Sleeping, 1)).await.unwrap();
    // Crash right after creating the backup Job (writes: none needed for a sleeping session but the Job).
    c.kubelet_stop();
    c.faults.set(Some(Fault::CrashAfterWrites { k: 1 }));
    assert!(c.converge(&target(&id, DesiredState::Deleted, 2)).await.is_err());
    c.faults.set(None);
    let job = c.api::<Job>().get(&names::backup_job(&id, 2)).await.unwrap();
    let file = worker::k8s::backup::file_of(&job).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.start_kubelet();
    let out = c.converge(&target(&id, DesiredState::Deleted, 2)).await.unwrap();
    assert_eq!(out.backup_file.as_deref(), Some(file.as_str()), "retries agree on one file name");
}
