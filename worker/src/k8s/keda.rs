//! The KEDA `ScaledObject` (`keda.sh/v1alpha1`) of a session: a small typed
//! struct implementing [`kube::Resource`] through `resource.rs`'s macro (no
//! CRD derive, so the production worker does not pull schemars), and its
//! pure builder.
//!
//! # Sleep, wake and KEDA
//! The ScaledObject scales the workspace between 0 and 1 replicas on the
//! length of the session's demand list ([`proto_types::keys::demand`]), so
//! an idle session can be scaled to zero by KEDA after `cooldownPeriod`.
//! A user's *sleep* must take effect at once and KEDA must never wake such a
//! session, whatever the demand list says. KEDA's
//! `autoscaling.keda.sh/paused-replicas` annotation does exactly that: while
//! present, KEDA pins the target to that many replicas and stops scaling it.
//! The worker therefore applies it (`"0"`) **before** setting the Deployment
//! to zero replicas on sleep, and removes it **after** setting one replica on
//! wake. Removal uses a JSON merge patch with `null`: on a real cluster
//! server-side apply would also drop it once our manager stops sending it,
//! but the local stand-in cluster does not remove dropped fields, and the
//! merge patch is correct on both.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proto_types::SessionId;
use serde::{Deserialize, Serialize};

use super::k8s_config::K8sConfig;
use super::names;

/// API group of KEDA objects.
pub const GROUP: &str = "keda.sh";
/// API version of KEDA objects.
pub const VERSION: &str = "v1alpha1";

/// A KEDA ScaledObject, reduced to the fields the worker sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaledObject {
    /// Always `keda.sh/v1alpha1`.
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    /// Always `ScaledObject`.
    #[serde(default = "kind")]
    pub kind: String,
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// What to scale and on which trigger.
    pub spec: ScaledObjectSpec,
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    "ScaledObject".into()
}

/// `spec` of a [`ScaledObject`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// The Deployment to scale.
    pub scale_target_ref: ScaleTargetRef,
    /// Lowest replica count (0: scale to zero when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    /// Highest replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    /// Seconds without demand before scaling to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    /// Seconds after creation before KEDA may first scale to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cooldown_period: Option<i32>,
    /// Seconds between two trigger checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    /// The triggers.
    pub triggers: Vec<Trigger>,
}

/// `spec.scaleTargetRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// API version of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the target.
    pub name: String,
}

/// One entry of `spec.triggers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Scaler type, e.g. `redis`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Scaler settings (free-form strings).
    pub metadata: BTreeMap<String, String>,
    /// TriggerAuthentication holding the secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
}

/// `triggers[].authenticationRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthenticationRef {
    /// Name of the TriggerAuthentication.
    pub name: String,
}

super::resource::namespaced_resource!(ScaledObject, group: GROUP, version: VERSION, kind: "ScaledObject", plural: "scaledobjects");

/// The session's ScaledObject; `paused` adds the paused-replicas annotation
/// pinning the workspace to zero replicas.
pub fn scaled_object(config: &K8sConfig, id: &SessionId, paused: bool) -> ScaledObject {
    let annotations = paused.then(|| BTreeMap::from([(names::PAUSED_REPLICAS.to_owned(), "0".to_owned())]));
    ScaledObject {
        api_version: api_version(),
        kind: kind(),
        metadata: ObjectMeta {
            name: Some(names::workspace(id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(names::component_labels(id, "workspace")),
            annotations,
            ..Default::default()
        },
        spec: ScaledObjectSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: names::workspace(id),
            },
            min_replica_count: Some(0),
            max_replica_count: Some(1),
            cooldown_period: Some(300),
            // KEDA scales a new target to minReplicaCount at once unless told
            // to wait; give a fresh workspace the same grace as an idle one.
            initial_cooldown_period: Some(300),
            polling_interval: Some(15),
            triggers: vec![Trigger {
                type_: "redis".into(),
                metadata: BTreeMap::from([
                    ("address".to_owned(), config.keda_redis_address.clone()),
                    ("listName".to_owned(), proto_types::keys::demand(id.as_str())),
                    ("listLength".to_owned(), "1".to_owned()),
                    ("activationListLength".to_owned(), "0".to_owned()),
                ]),
                authentication_ref: Some(AuthenticationRef { name: config.keda_trigger_auth.clone() }),
            }],
        },
    }
}

/// Whether a ScaledObject carries the paused-replicas annotation.
pub fn is_paused(so: &ScaledObject) -> bool {
    so.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(names::PAUSED_REPLICAS))
}
