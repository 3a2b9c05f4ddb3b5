//! [`resource_impl!`]: `kube::Resource` for the stand-in's hand-typed custom kinds (KEDA's,
//! the CSI snapshot kinds), each with a `metadata: ObjectMeta` field.

/// Implements `kube::Resource` (no dynamic type) for `$ty` in API group `$group`/`$version`,
/// with the given kind, plural and scope.
macro_rules! resource_impl {
    ($ty:ident, $group:expr, $version:expr, $kind:expr, $plural:expr, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

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

pub(crate) use resource_impl;
