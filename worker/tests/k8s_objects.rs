//! The generated objects, as a cluster would judge them: labels and
//! selectors that match, the `restricted` Pod Security Standard, resources,
//! probe, volume, ingress host/TLS/class, the KEDA trigger; every KEDA object
//! validated against the KEDA 2.20 CRD schema and every built-in object with
//! `kubernetes-validate` (PyPI) when it is installed.
//!
//! Schemas come from `K8S_SCHEMAS_DIR` (default `../shared/k8s-schemas`
//! beside the repository). `kubernetes-validate` is used when
//! `python3 -m kubernetes_validate` works; set `KUBERNETES_VALIDATE_REQUIRED=1`
//! (as `make test` does) to fail instead of skipping when it is missing.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use proto_types::SessionId;
use serde_json::Value;
use worker::k8s::{K8sConfig, names, render_session_objects};

fn id() -> SessionId {
    SessionId::parse("0fa6debc").unwrap()
}

fn objects() -> Vec<Value> {
    render_session_objects(&K8sConfig::default(), &id(), None)
}

fn of_kind(kind: &str) -> Value {
    objects().into_iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Every label in `sub` is in `sup` with the same value.
fn subset(sub: &Value, sup: &Value) -> bool {
    sub.as_object().unwrap().iter().all(|(k, v)| sup.get(k) == Some(v))
}

fn assert_restricted(pod_spec: &Value) {
    let psc = &pod_spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 1000);
    assert_eq!(psc["fsGroup"], 1000);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    for c in pod_spec["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert!(sc["capabilities"].get("add").is_none());
        assert_ne!(sc["privileged"], true);
    }
    assert!(pod_spec.get("hostNetwork").is_none() && pod_spec.get("hostPID").is_none());
    for v in pod_spec["volumes"].as_array().unwrap() {
        assert!(v.get("hostPath").is_none());
    }
}

#[test]
fn every_object_is_labelled_and_namespaced() {
    let all = objects();
    assert_eq!(
        all.len(),
        9,
        "PVC, Deployment, Service, Ingress, ScaledObject, backup Job, restore Job, VolumeSnapshot, restored PVC"
    );
    for o in &all {
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels[names::MANAGED_BY], "session-manager", "{}", o["kind"]);
        assert_eq!(labels[names::PART_OF], "session-manager");
        assert_eq!(labels[names::SESSION_LABEL], "0fa6debc");
        assert_eq!(o["metadata"]["namespace"], "workspaces");
        assert!(o.get("status").is_none_or(Value::is_null), "apply must not claim status");
    }
}

#[test]
fn pvc_size_class_and_access_mode() {
    let pvc = of_kind("PersistentVolumeClaim");
    assert_eq!(pvc["metadata"]["name"], "ws-0fa6debc-data");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(pvc["spec"]["storageClassName"], "standard-rwo");
    assert_eq!(pvc["spec"]["accessModes"], serde_json::json!(["ReadWriteOnce"]));
}

#[test]
fn deployment_selects_its_pods_and_is_restricted() {
    let d = of_kind("Deployment");
    assert_eq!(d["metadata"]["name"], "ws-0fa6debc");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate", "RWO volume: never two pods");
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    assert!(subset(&d["spec"]["selector"]["matchLabels"], pod_labels));
    assert_eq!(pod_labels[names::SESSION_LABEL], "0fa6debc");
    let pod = &d["spec"]["template"]["spec"];
    assert_restricted(pod);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "codercom/code-server:4.139.1");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8080);
    assert_eq!(c["resources"]["requests"], serde_json::json!({"cpu": "250m", "memory": "256Mi"}));
    assert_eq!(c["resources"]["limits"], serde_json::json!({"cpu": "500m", "memory": "512Mi"}));
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/app");
    let vol = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == c["volumeMounts"][0]["name"]).unwrap();
    assert_eq!(vol["persistentVolumeClaim"]["claimName"], "ws-0fa6debc-data");
}

#[test]
fn service_and_ingress_route_to_the_pod() {
    let d = of_kind("Deployment");
    let svc = of_kind("Service");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(subset(&svc["spec"]["selector"], &d["spec"]["template"]["metadata"]["labels"]));
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    let target = &svc["spec"]["ports"][0]["targetPort"];
    let port_names: Vec<_> = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert!(port_names.contains(target), "targetPort {target} names a container port");

    let ing = of_kind("Ingress");
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    assert_eq!(ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt-prod");
    let host = "vs-code-0fa6debc.preview.example.com";
    assert_eq!(ing["spec"]["rules"][0]["host"], host);
    assert_eq!(ing["spec"]["tls"][0]["hosts"], serde_json::json!([host]));
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "ws-0fa6debc-tls");
    let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], svc["metadata"]["name"]);
    assert_eq!(backend["port"]["number"], svc["spec"]["ports"][0]["port"]);
}

#[test]
fn ingress_uses_the_recorded_workspace_url() {
    let objs = render_session_objects(&K8sConfig::default(), &id(), Some("https://vs-code-0fa6debc.eu.example.org/"));
    let ing = objs.iter().find(|o| o["kind"] == "Ingress").unwrap();
    assert_eq!(ing["spec"]["rules"][0]["host"], "vs-code-0fa6debc.eu.example.org");
}

#[test]
fn scaled_object_trigger_auth_and_bounds() {
    let so = of_kind("ScaledObject");
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["spec"]["scaleTargetRef"]["name"], of_kind("Deployment")["metadata"]["name"]);
    assert_eq!(so["spec"]["minReplicaCount"], 0);
    assert_eq!(so["spec"]["maxReplicaCount"], 1);
    assert_eq!(so["spec"]["cooldownPeriod"], 300);
    let t = &so["spec"]["triggers"][0];
    assert_eq!(t["type"], "redis");
    assert_eq!(s(&t["metadata"]["listName"]), proto_types::keys::demand("0fa6debc"));
    assert_eq!(t["metadata"]["listLength"], "1");
    assert_eq!(t["authenticationRef"]["name"], "workspace-redis");
    let meta = t["metadata"].as_object().unwrap();
    assert!(!meta.keys().any(|k| k.to_lowercase().contains("password")), "no inline password");
    assert!(so["metadata"].get("annotations").is_none_or(Value::is_null), "running: not paused");
}

#[test]
fn backup_job_mounts_the_volume_read_only_and_is_restricted() {
    let job = of_kind("Job");
    assert_eq!(job["metadata"]["name"], "ws-0fa6debc-backup-g1");
    let file = s(&job["metadata"]["annotations"][names::BACKUP_FILE_ANNOTATION]).to_owned();
    assert_eq!(file, "app-0fa6debc-19700101-000000-g1.zip");
    let spec = &job["spec"];
    assert!(spec["backoffLimit"].as_i64().unwrap() <= 3);
    assert!(spec["ttlSecondsAfterFinished"].as_i64().unwrap() > 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_restricted(pod);
    let c = &pod["containers"][0];
    let env: Vec<_> = c["env"].as_array().unwrap().iter().filter(|e| e["name"] == "BACKUP_FILE").collect();
    assert_eq!(env[0]["value"], file.as_str(), "the Job writes the file it announces");
    let mounts = c["volumeMounts"].as_array().unwrap();
    let app = mounts.iter().find(|m| m["mountPath"] == "/app").unwrap();
    assert_eq!(app["readOnly"], true);
    assert!(mounts.iter().any(|m| m["mountPath"] == "/backup"));
    let vols = pod["volumes"].as_array().unwrap();
    let data = vols.iter().find(|v| v["name"] == app["name"]).unwrap();
    assert_eq!(data["persistentVolumeClaim"]["claimName"], "ws-0fa6debc-data");
    assert_eq!(data["persistentVolumeClaim"]["readOnly"], true);
    assert!(vols.iter().any(|v| v["persistentVolumeClaim"]["claimName"] == "backup-pvc"));
    let program = s(&c["command"][2]);
    assert_eq!(c["command"][0], "python3");
    assert!(
        program.contains(&format!("os.environ[{:?}]", "BACKUP_FILE")) && program.contains("testzip"),
        "verifies what it wrote"
    );
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File", "the report is read from the file, not the log tail");
}

fn schemas_dir() -> PathBuf {
    std::env::var_os("K8S_SCHEMAS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/k8s-schemas"))
}

fn crd_schema(file: &str) -> Value {
    crd_version_schema(file, "v1alpha1")
}

fn crd_version_schema(file: &str, version: &str) -> Value {
    let path = schemas_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set K8S_SCHEMAS_DIR to the CRDs)", path.display()));
    let crd: Value = serde_saphyr::from_str(text.trim_start_matches("---\n")).unwrap();
    let v = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == version).unwrap();
    v["schema"]["openAPIV3Schema"].clone()
}

fn keda_errors(schema: &Value, obj: &Value) -> Vec<String> {
    let v = jsonschema::validator_for(schema).unwrap();
    v.iter_errors(obj).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn scaled_objects_satisfy_the_keda_crd() {
    let schema = crd_schema("keda.sh_scaledobjects.yaml");
    let cfg = K8sConfig::default();
    for paused in [false, true] {
        let so = serde_json::to_value(worker::k8s::keda::scaled_object(&cfg, &id(), paused)).unwrap();
        assert_eq!(keda_errors(&schema, &so), Vec::<String>::new(), "paused={paused}");
    }
    // The validator is not vacuous: KEDA rejects a ScaledObject without triggers.
    let mut bad = of_kind("ScaledObject");
    bad["spec"]["triggers"] = serde_json::json!([]);
    bad["spec"]["scaleTargetRef"] = serde_json::json!({});
    assert!(keda_errors(&schema, &bad).len() >= 2);
}

#[test]
fn the_snapshot_satisfies_its_crd_and_the_restored_pvc_names_it() {
    let schema = crd_version_schema("snapshot.storage.k8s.io_volumesnapshots.yaml", "v1");
    let snap = of_kind("VolumeSnapshot");
    assert_eq!(snap["apiVersion"], "snapshot.storage.k8s.io/v1");
    assert_eq!(snap["metadata"]["name"], "ws-0fa6debc-snap-g1");
    assert_eq!(snap["spec"]["source"]["persistentVolumeClaimName"], "ws-0fa6debc-data");
    assert_eq!(snap["spec"]["volumeSnapshotClassName"], "workspace-snapshots");
    assert_eq!(keda_errors(&schema, &snap), Vec::<String>::new());
    // Not vacuous: the CRD requires a source. (Its CEL rules, exactly one
    // source and no empty class name, are not JSON Schema: checked here.)
    let mut bad = snap.clone();
    bad["spec"].as_object_mut().unwrap().remove("source");
    assert!(!keda_errors(&schema, &bad).is_empty(), "a snapshot without a source is refused");
    assert_eq!(snap["spec"]["source"].as_object().unwrap().len(), 1, "exactly one source");
    let default_class = K8sConfig { snapshot_class: String::new(), ..K8sConfig::default() };
    let objs = render_session_objects(&default_class, &id(), None);
    let snap = objs.iter().find(|o| o["kind"] == "VolumeSnapshot").unwrap();
    assert!(snap["spec"].get("volumeSnapshotClassName").is_none(), "no empty class name: the default class");

    let restored = objects().into_iter().filter(|o| o["kind"] == "PersistentVolumeClaim").nth(1).unwrap();
    assert_eq!(
        restored["spec"]["dataSourceRef"],
        serde_json::json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "ws-0fa6debc-snap-g1"})
    );
    assert_eq!(restored["spec"]["resources"]["requests"]["storage"], "5Gi");
    // A snapshot larger than the configured size gets a volume that fits it.
    let big = worker::k8s::objects::pvc_from_snapshot(&K8sConfig::default(), &id(), "s", 6 << 30);
    let big = serde_json::to_value(big).unwrap();
    assert_eq!(big["spec"]["resources"]["requests"]["storage"], (6u64 << 30).to_string());
}

fn kubernetes_validate_available() -> bool {
    std::process::Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn built_in_objects_pass_kubernetes_validate() {
    if !kubernetes_validate_available() {
        assert!(
            std::env::var_os("KUBERNETES_VALIDATE_REQUIRED").is_none(),
            "kubernetes-validate missing: pip install kubernetes-validate"
        );
        eprintln!("SKIP: python3 -m kubernetes_validate not installed (pip install kubernetes-validate)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let custom = ["keda.sh/v1alpha1", "snapshot.storage.k8s.io/v1"];
    for (i, o) in objects().iter().enumerate().filter(|(_, o)| !custom.contains(&s(&o["apiVersion"]))) {
        let path = dir.path().join(format!("{i}-{}.json", s(&o["kind"]).to_lowercase()));
        std::fs::write(&path, serde_json::to_vec_pretty(o).unwrap()).unwrap();
        files.push(path);
    }
    assert_eq!(files.len(), 7, "PVC twice (fresh and from a snapshot), Deployment, Service, Ingress, two Jobs");
    for version in ["1.30.0", "1.32.0"] {
        let out = std::process::Command::new("python3")
            .args(["-m", "kubernetes_validate", "-k", version, "--strict", "--quiet"])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubernetes-validate {version}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Not vacuous: an unknown field fails strict validation.
    let mut bad = of_kind("Service");
    bad["spec"]["selectr"] = serde_json::json!({});
    let path = dir.path().join("bad.json");
    std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "kubernetes_validate", "-k", "1.32.0", "--strict", "--quiet"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "strict validation must reject unknown fields");
}

#[test]
fn the_prune_job_mounts_only_the_backup_volume_is_restricted_and_validates() {
    let objs = worker::k8s::render_worker_objects(&K8sConfig::default());
    assert_eq!(objs.len(), 1);
    let job = &objs[0];
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["labels"][names::MANAGED_BY], "session-manager");
    assert_eq!(job["metadata"]["namespace"], "workspaces");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_restricted(pod);
    let vols = pod["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0]["persistentVolumeClaim"]["claimName"], "backup-pvc");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/backup");
    if !kubernetes_validate_available() {
        assert!(std::env::var_os("KUBERNETES_VALIDATE_REQUIRED").is_none(), "kubernetes-validate missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prune-job.json");
    std::fs::write(&path, serde_json::to_vec_pretty(job).unwrap()).unwrap();
    for version in ["1.30.0", "1.32.0"] {
        let out = std::process::Command::new("python3")
            .args(["-m", "kubernetes_validate", "-k", version, "--strict", "--quiet"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "kubernetes-validate {version}: {}", String::from_utf8_lossy(&out.stdout));
    }
}
