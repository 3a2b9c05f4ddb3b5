//! Names, labels and annotations of the per-session objects, all derived
//! from the session id so every step can find its objects again without
//! remembering anything.
//!
//! | object | name |
//! |---|---|
//! | Deployment, Service, Ingress, ScaledObject | `ws-{id}` |
//! | PersistentVolumeClaim | `ws-{id}-data` |
//! | backup Job | `ws-{id}-backup-g{generation}` |
//! | backup VolumeSnapshot (snapshot mode) | `ws-{id}-snap-g{generation}` |
//! | restore Job | `ws-{id}-restore` |
//! | TLS Secret (cert-manager) | `ws-{id}-tls` |
//!
//! A [`proto_types::SessionId`] is at most 40 characters, so every name stays
//! inside the 63-character DNS label limit (the backup Job name with a
//! 20-digit generation is 3 + 40 + 9 + 20 = 72 characters in the worst
//! case, which is why the generation is cut to its low 10 digits there).

use std::collections::BTreeMap;

use proto_types::SessionId;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "session-manager";
/// Label naming the tool that manages an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the system an object belongs to.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Value of [`MANAGED_BY`] and [`PART_OF`].
pub const SYSTEM: &str = "session-manager";
/// Label carrying the session id.
pub const SESSION_LABEL: &str = "session-uuid";
/// Label telling workspace pods from backup pods.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// KEDA annotation that pins a ScaledObject's target to a replica count.
pub const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// Annotation on the backup Job holding the file it writes.
pub const BACKUP_FILE_ANNOTATION: &str = "session-manager/backup-file";
/// Annotation on every object the worker writes: the fencing token of the
/// session lease it was written under (see `gate.rs`).
pub const FENCE_ANNOTATION: &str = "session-manager.io/fence";
/// Container port of code-server.
pub const WORKSPACE_PORT: i32 = 8080;

/// Name of the Deployment, Service, Ingress and ScaledObject.
pub fn workspace(id: &SessionId) -> String {
    format!("ws-{id}")
}

/// Name of the session's PersistentVolumeClaim.
pub fn pvc(id: &SessionId) -> String {
    format!("ws-{id}-data")
}

/// Name of the backup Job of one delete request (one session generation).
pub fn backup_job(id: &SessionId, generation: u64) -> String {
    format!("ws-{id}-backup-g{}", generation % 10_000_000_000)
}

/// Name of the VolumeSnapshot of one delete or backup request (snapshot mode).
pub fn backup_snapshot(id: &SessionId, generation: u64) -> String {
    format!("ws-{id}-snap-g{}", generation % 10_000_000_000)
}

/// Id of the backup a delete request (one session generation) takes.
pub fn backup_id(id: &SessionId, generation: u64) -> String {
    proto_types::record::backup::id(id.as_str(), generation)
}

/// Name of the restore Job of a session created from a backup.
pub fn restore_job(id: &SessionId) -> String {
    format!("ws-{id}-restore")
}

/// Annotation on the restore Job: the backup id it restores.
pub const RESTORE_FROM_ANNOTATION: &str = "session-manager.io/restore-from";

/// Label the Job controller puts on a Job's pods: the Job's name.
pub const JOB_NAME_LABEL: &str = "job-name";

/// Name of the TLS Secret cert-manager issues for the Ingress.
pub fn tls_secret(id: &SessionId) -> String {
    format!("ws-{id}-tls")
}

/// Labels every object of the session carries.
pub fn labels(id: &SessionId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), SYSTEM.to_owned()),
        (PART_OF.to_owned(), SYSTEM.to_owned()),
        (SESSION_LABEL.to_owned(), id.to_string()),
    ])
}

/// Labels of the session's object plus its component.
pub fn component_labels(id: &SessionId, component: &str) -> BTreeMap<String, String> {
    let mut l = labels(id);
    l.insert(COMPONENT.to_owned(), component.to_owned());
    l
}

/// The label selector matching the session's workspace pods.
pub fn workspace_pod_selector(id: &SessionId) -> String {
    format!("{SESSION_LABEL}={id},{COMPONENT}=workspace")
}

/// The session's workspace URL: the recorded one, else the pattern.
pub fn workspace_url(pattern: &str, id: &SessionId, recorded: Option<&str>) -> String {
    match recorded {
        Some(url) if !url.is_empty() => url.to_owned(),
        _ => pattern.replace("{uuid}", id.as_str()),
    }
}

/// The host part of a URL (`https://h.example.com/x` → `h.example.com`).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    authority.split_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_dns_labels_for_the_longest_id() {
        let id = SessionId::parse(&"a".repeat(SessionId::MAX_LEN)).expect("valid");
        for name in
            [workspace(&id), pvc(&id), backup_job(&id, u64::MAX), backup_snapshot(&id, u64::MAX), tls_secret(&id)]
        {
            assert!(name.len() <= 63, "{name} is {} long", name.len());
        }
    }

    #[test]
    fn backup_job_names_differ_per_generation() {
        let id = SessionId::parse("abc").expect("valid");
        assert_eq!(backup_job(&id, 7), "ws-abc-backup-g7");
        assert_ne!(backup_job(&id, 7), backup_job(&id, 8));
    }

    #[test]
    fn host_comes_from_recorded_url_or_pattern() {
        let id = SessionId::parse("0fa6debc").expect("valid");
        let p = "https://vs-code-{uuid}.preview.example.com";
        assert_eq!(host_of(&workspace_url(p, &id, None)), "vs-code-0fa6debc.preview.example.com");
        let rec = workspace_url(p, &id, Some("https://vs-code-0fa6debc.other.example.org:443/x?y"));
        assert_eq!(host_of(&rec), "vs-code-0fa6debc.other.example.org");
        assert_eq!(host_of("plain.example.com"), "plain.example.com");
    }
}
