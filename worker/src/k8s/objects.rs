//! Pure builders of the built-in objects of one session: PersistentVolumeClaim,
//! Deployment, Service and Ingress. (The KEDA ScaledObject is in
//! [`super::keda`], the backup Job in [`super::backup`].)
//!
//! Builders take the config and the session id and return the full object
//! we apply with server-side apply; they never talk to a cluster. Status and
//! server-set fields are left out so apply never claims them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service, ServicePort,
    ServiceSpec, TypedObjectReference, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proto_types::SessionId;

use super::k8s_config::K8sConfig;
use super::names;
use super::security;

/// Where the session volume is mounted in the workspace (and read in backups).
pub const APP_DIR: &str = "/app";

fn meta(config: &K8sConfig, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The session's ReadWriteOnce volume.
pub fn pvc(config: &K8sConfig, id: &SessionId) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(config, names::pvc(id), names::component_labels(id, "data")),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(config.storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(config.pvc_size.clone()))])),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The session's volume made from VolumeSnapshot `snapshot` (a restore in
/// snapshot mode): [`pvc`] with `dataSourceRef` naming it, requesting at
/// least the snapshot's `restore_size_bytes` (a restore into a smaller
/// volume fails to provision). The apply keeps sending the same source,
/// which Kubernetes never lets change.
pub fn pvc_from_snapshot(
    config: &K8sConfig,
    id: &SessionId,
    snapshot: &str,
    restore_size_bytes: u64,
) -> PersistentVolumeClaim {
    let mut claim = pvc(config, id);
    if let Some(spec) = claim.spec.as_mut() {
        spec.data_source_ref = Some(TypedObjectReference {
            api_group: Some(super::snapshot::GROUP.into()),
            kind: super::snapshot::KIND.into(),
            name: snapshot.into(),
            namespace: None,
        });
        let configured = super::snapshot::quantity_bytes(&config.pvc_size).unwrap_or(0);
        if restore_size_bytes > configured
            && let Some(requests) = spec.resources.as_mut().and_then(|r| r.requests.as_mut())
        {
            requests.insert("storage".into(), Quantity(restore_size_bytes.to_string()));
        }
    }
    claim
}

/// The workspace Deployment with `replicas` replicas.
pub fn deployment(config: &K8sConfig, id: &SessionId, replicas: i32) -> Deployment {
    let pod_labels = names::component_labels(id, "workspace");
    let selector = BTreeMap::from([
        (names::SESSION_LABEL.to_owned(), id.to_string()),
        (names::COMPONENT.to_owned(), "workspace".to_owned()),
    ]);
    let quantities = |cpu: &str, mem: &str| {
        BTreeMap::from([("cpu".to_owned(), Quantity(cpu.to_owned())), ("memory".to_owned(), Quantity(mem.to_owned()))])
    };
    let container = Container {
        name: "code-server".into(),
        image: Some(config.image.clone()),
        args: Some(vec![
            "--bind-addr".into(),
            format!("0.0.0.0:{}", names::WORKSPACE_PORT),
            // Authentication is the gateway's (signed access links, then a
            // host-only cookie; the workspace NetworkPolicy admits only the
            // gateway). With WORKSPACE_ROUTING=ingress nothing stands in front.
            "--auth".into(),
            "none".into(),
            "--disable-telemetry".into(),
            APP_DIR.into(),
        ]),
        env: Some(vec![EnvVar { name: "HOME".into(), value: Some(format!("{APP_DIR}/.home")), value_from: None }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: names::WORKSPACE_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(names::WORKSPACE_PORT),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(2),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&config.cpu_request, &config.memory_request)),
            limits: Some(quantities(&config.cpu_limit, &config.memory_limit)),
            ..Default::default()
        }),
        security_context: Some(security::container(false)),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: APP_DIR.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    Deployment {
        metadata: meta(config, names::workspace(id), names::component_labels(id, "workspace")),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            // The volume is ReadWriteOnce: never run two pods at once.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
            selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..Default::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(security::pod()),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "data".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: names::pvc(id),
                            read_only: Some(false),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The ClusterIP Service in front of the workspace pod.
pub fn service(config: &K8sConfig, id: &SessionId) -> Service {
    Service {
        metadata: meta(config, names::workspace(id), names::component_labels(id, "workspace")),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([
                (names::SESSION_LABEL.to_owned(), id.to_string()),
                (names::COMPONENT.to_owned(), "workspace".to_owned()),
            ])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: names::WORKSPACE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The Ingress publishing the workspace on its host, with TLS from cert-manager.
pub fn ingress(config: &K8sConfig, id: &SessionId, workspace_url: Option<&str>) -> Ingress {
    let url = names::workspace_url(&config.url_pattern, id, workspace_url);
    let host = names::host_of(&url).to_owned();
    let mut metadata = meta(config, names::workspace(id), names::component_labels(id, "workspace"));
    metadata.annotations = Some(BTreeMap::from([
        ("cert-manager.io/cluster-issuer".to_owned(), config.cluster_issuer.clone()),
        // code-server keeps a websocket open for the whole session.
        ("nginx.ingress.kubernetes.io/proxy-read-timeout".to_owned(), "3600".to_owned()),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout".to_owned(), "3600".to_owned()),
        ("nginx.ingress.kubernetes.io/proxy-body-size".to_owned(), "64m".to_owned()),
    ]));
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(config.ingress_class.clone()),
            tls: Some(vec![IngressTLS { hosts: Some(vec![host.clone()]), secret_name: Some(names::tls_secret(id)) }]),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: names::workspace(id),
                                port: Some(ServiceBackendPort { number: Some(names::WORKSPACE_PORT), name: None }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            default_backend: None,
        }),
        status: None,
    }
}
