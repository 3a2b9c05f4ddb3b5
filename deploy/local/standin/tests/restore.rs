//! The process kubelet's snapshot pass over the fake cluster, without running any process:
//! a snapshot copies its claim's directory, a claim with a `dataSourceRef` is made from that
//! copy (and not before the snapshot is ready), and its pods wait Pending until then.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube_standin::config::ProcessSettings;
use kube_standin::process_kubelet::ProcessKubelet;
use kube_standin::snapshot::VolumeSnapshot;
use serde_json::json;
use std::path::Path;

const NS: &str = "workspaces";
const MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "session-manager");

fn claim(name: &str, from: Option<&str>) -> PersistentVolumeClaim {
    let mut c = json!({
        "metadata": { "name": name, "namespace": NS, "labels": { MANAGED.0: MANAGED.1 } },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } }
    });
    if let Some(snap) = from {
        c["spec"]["dataSourceRef"] =
            json!({ "apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap });
    }
    serde_json::from_value(c).unwrap()
}

async fn setup(dir: &Path) -> (kube::Client, ProcessKubelet) {
    let client = kube_standin::cluster::build(Vec::new()).await.unwrap();
    let settings = ProcessSettings {
        code_server: dir.join("code-server"),
        volumes_dir: dir.join("volumes"),
        pod_logs_dir: dir.join("logs"),
        pods_dir: dir.join("pods"),
    };
    let kubelet = ProcessKubelet::new(client.clone(), &settings);
    (client, kubelet)
}

#[tokio::test]
async fn a_claim_restored_from_a_snapshot_has_its_files_byte_for_byte_and_not_later_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let (client, mut kubelet) = setup(tmp.path()).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), NS);
    let vol = tmp.path().join("volumes").join(NS);

    claims.create(&PostParams::default(), &claim("data", None)).await.unwrap();
    kubelet.pass().await;
    let src = vol.join("data");
    std::fs::create_dir_all(src.join("nested/deeper")).unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(src.join("nested/deeper/blob.bin"), &bytes).unwrap();
    std::os::unix::fs::symlink("nested/deeper/blob.bin", src.join("link")).unwrap();

    // A claim restored from a snapshot that does not exist yet waits: no directory, and a pod
    // mounting it is Pending.
    claims.create(&PostParams::default(), &claim("copy", Some("s1"))).await.unwrap();
    kubelet.pass().await;
    assert!(!vol.join("copy").exists());

    snaps.create(&PostParams::default(), &VolumeSnapshot::of_claim("s1", NS, "data")).await.unwrap();
    kubelet.pass().await;
    let s1 = snaps.get("s1").await.unwrap();
    assert!(s1.ready(), "{:?}", s1.status);
    assert_eq!(s1.status["restoreSize"], "1Gi");
    std::fs::write(src.join("nested/deeper/blob.bin"), "changed").unwrap();
    std::fs::write(src.join("added.txt"), "new").unwrap();

    kubelet.pass().await;
    let copy = vol.join("copy");
    assert_eq!(std::fs::read(copy.join("nested/deeper/blob.bin")).unwrap(), bytes);
    assert_eq!(std::fs::read_link(copy.join("link")).unwrap(), Path::new("nested/deeper/blob.bin"));
    assert!(!copy.join("added.txt").exists(), "later changes to the source are not in the snapshot");

    // A deleted snapshot's copy goes; the restored claim keeps its files.
    let snap_dir = tmp.path().join("volumes/.snapshots").join(NS).join("s1");
    assert!(snap_dir.is_dir());
    snaps.delete("s1", &DeleteParams::default()).await.unwrap();
    kubelet.pass().await;
    assert!(!snap_dir.exists());
    assert_eq!(std::fs::read(copy.join("nested/deeper/blob.bin")).unwrap(), bytes);
}

#[tokio::test]
async fn a_snapshot_of_a_missing_claim_reports_the_error_and_its_restores_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let (client, mut kubelet) = setup(tmp.path()).await;
    let snaps: Api<VolumeSnapshot> = Api::namespaced(client.clone(), NS);
    snaps.create(&PostParams::default(), &VolumeSnapshot::of_claim("s1", NS, "gone")).await.unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    claims.create(&PostParams::default(), &claim("copy", Some("s1"))).await.unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "ws-a", "namespace": NS, "labels": { MANAGED.0: MANAGED.1 } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "ws-a" } },
            "template": {
                "metadata": { "labels": { "app": "ws-a" } },
                "spec": {
                    "containers": [{ "name": "c", "image": "busybox", "command": ["true"],
                                     "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                    "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "copy" } }]
                }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), NS).create(&PostParams::default(), &deployment).await.unwrap();
    kubelet.pass().await;
    kubelet.pass().await;
    let s1 = snaps.get("s1").await.unwrap();
    assert_eq!(s1.status["readyToUse"], false);
    assert!(s1.status["error"]["message"].as_str().unwrap().contains("gone"));
    assert!(!tmp.path().join("volumes").join(NS).join("copy").exists());
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let pod = pods.get("ws-a-0").await.unwrap();
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.conditions.unwrap()[0].reason.as_deref(), Some("WaitingForSnapshot"));
    assert!(status.container_statuses.is_none(), "no process was started");
    kubelet.stop_all().await;
}
