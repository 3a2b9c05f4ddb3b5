//! Minimal typed KEDA kinds (`keda.sh/v1alpha1` ScaledObject and TriggerAuthentication) so the
//! fake cluster can register them, and tests can read them back through `kube::Api`.
//!
//! The spec is kept as free JSON: the stand-in stores what it is given and validates nothing;
//! schema checks against the KEDA CRDs belong to the worker's tests, not here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::resource::resource_impl;

/// KEDA's API group.
pub const GROUP: &str = "keda.sh";
/// KEDA's API version served here.
pub const VERSION: &str = "v1alpha1";

macro_rules! keda_kind {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $plural:literal, $singular:literal, [$($short:literal),*]) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
        #[serde(rename_all = "camelCase")]
        pub struct $ty {
            /// Always `keda.sh/v1alpha1`.
            #[serde(default = "api_version")]
            pub api_version: String,
            /// The kind name.
            #[serde(default)]
            pub kind: String,
            /// Standard object metadata.
            #[serde(default)]
            pub metadata: ObjectMeta,
            /// The spec, stored as given.
            #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
            pub spec: serde_json::Value,
            /// The status, stored as given.
            #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
            pub status: serde_json::Value,
        }

        impl $ty {
            /// Kind name.
            pub const KIND: &'static str = $kind;
            /// Plural resource name.
            pub const PLURAL: &'static str = $plural;
            /// Singular resource name.
            pub const SINGULAR: &'static str = $singular;
            /// kubectl short names.
            pub const SHORT_NAMES: &'static [&'static str] = &[$($short),*];

            /// An object with this name and namespace and the given spec.
            pub fn new(name: &str, namespace: &str, spec: serde_json::Value) -> Self {
                Self {
                    api_version: api_version(),
                    kind: $kind.to_string(),
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        ..ObjectMeta::default()
                    },
                    spec,
                    status: serde_json::Value::Null,
                }
            }
        }

        resource_impl!($ty, GROUP, VERSION, $kind, $plural, k8s_openapi::NamespaceResourceScope);
    };
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

keda_kind!(
    /// KEDA ScaledObject: scales a workload from a trigger.
    ScaledObject,
    "ScaledObject",
    "scaledobjects",
    "scaledobject",
    ["so"]
);

keda_kind!(
    /// KEDA TriggerAuthentication: credentials a trigger reads (e.g. from a Secret).
    TriggerAuthentication,
    "TriggerAuthentication",
    "triggerauthentications",
    "triggerauthentication",
    ["ta", "triggerauth"]
);

/// `(kind, plural, singular, short names)` of every KEDA kind served.
pub const KINDS: &[(&str, &str, &str, &[&str])] = &[
    (ScaledObject::KIND, ScaledObject::PLURAL, ScaledObject::SINGULAR, ScaledObject::SHORT_NAMES),
    (
        TriggerAuthentication::KIND,
        TriggerAuthentication::PLURAL,
        TriggerAuthentication::SINGULAR,
        TriggerAuthentication::SHORT_NAMES,
    ),
];
