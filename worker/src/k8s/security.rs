//! Pod and container security contexts that satisfy the `restricted` Pod
//! Security Standard, shared by the workspace Deployment and the backup Job.
//!
//! Everything runs as uid/gid 1000 (code-server's `coder` user), with
//! `fsGroup` 1000 so mounted volumes are writable by it. Nothing here is
//! configurable: loosening it would break admission in a `restricted`
//! namespace.

use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

/// The uid and gid every session container runs as.
pub const RUN_AS: i64 = 1000;

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

/// The pod-level security context.
pub fn pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// The container-level security context; `read_only_root` for containers
/// that write only to volumes.
pub fn container(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        read_only_root_filesystem: Some(read_only_root),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}
