//! [`namespaced_resource!`]: `kube::Resource` for the worker's hand-typed
//! custom kinds (KEDA's ScaledObject, the CSI VolumeSnapshot), so the
//! production worker needs no CRD derive (and no schemars).

/// Implements `kube::Resource` (namespaced, no dynamic type) for `$ty`,
/// which has a `metadata: ObjectMeta` field.
macro_rules! namespaced_resource {
    ($ty:ty, group: $group:expr, version: $version:expr, kind: $kind:expr, plural: $plural:expr) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = kube::core::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($kind)
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($group)
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($version)
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed($plural)
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use namespaced_resource;
