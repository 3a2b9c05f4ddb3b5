//! The backup Job of a delete: pure builder, the backup file name, and how
//! to read a Job's outcome.
//!
//! The Job mounts the session PVC read-only at `/app` and the shared backup
//! PVC at `/backup`, and writes `/backup/app-{uuid}-{YYYYmmdd-HHMMSS}.zip`
//! (to a hidden `.partial` file first, renamed when complete, so a
//! half-written archive never carries the final name). The image needs only
//! `sh` and `python3`: the archive (deflate-compressed, paths under `app/`)
//! is written by Python's standard `shutil.make_archive`, so nothing is
//! installed at run time (stock `alpine`/`busybox` have no `zip`). The
//! timestamp is chosen once, when the Job is first created, and stored in the
//! [`names::BACKUP_FILE_ANNOTATION`] annotation; every later attempt reads it
//! back from the Job, so retries agree on one file name.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proto_types::SessionId;

use super::k8s_config::K8sConfig;
use super::names;
use super::objects::APP_DIR;
use super::security;

/// Where the backup PVC is mounted.
pub const BACKUP_DIR: &str = "/backup";

/// The shell script run by the backup container.
const SCRIPT: &str = r#"set -eu
tmp="/backup/.${BACKUP_FILE}.partial"
python3 -c 'import shutil, sys; shutil.make_archive(sys.argv[1], "zip", root_dir="/", base_dir="app")' "$tmp"
mv "$tmp.zip" "/backup/${BACKUP_FILE}"
echo "wrote /backup/${BACKUP_FILE}""#;

/// The backup file name for a session at a UTC time.
pub fn file_name(id: &SessionId, at: jiff::Timestamp) -> String {
    format!("app-{id}-{}.zip", at.strftime("%Y%m%d-%H%M%S"))
}

/// The backup Job of delete request `generation`, writing `file`.
pub fn job(config: &K8sConfig, id: &SessionId, generation: u64, file: &str) -> Job {
    let labels = names::component_labels(id, "backup");
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(config.cpu_request.clone())),
        ("memory".to_owned(), Quantity(config.memory_request.clone())),
    ]);
    let limits = BTreeMap::from([
        ("cpu".to_owned(), Quantity(config.cpu_limit.clone())),
        ("memory".to_owned(), Quantity(config.memory_limit.clone())),
    ]);
    Job {
        metadata: ObjectMeta {
            name: Some(names::backup_job(id, generation)),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(names::BACKUP_FILE_ANNOTATION.to_owned(), file.to_owned())])),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            ttl_seconds_after_finished: Some(config.backup_job_ttl_secs),
            active_deadline_seconds: Some(i64::try_from(config.backup_timeout.as_secs()).unwrap_or(i64::MAX).max(1)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(security::pod()),
                    containers: vec![Container {
                        name: "backup".into(),
                        image: Some(config.backup_image.clone()),
                        command: Some(vec!["sh".into(), "-c".into(), SCRIPT.into()]),
                        env: Some(vec![
                            EnvVar { name: "BACKUP_FILE".into(), value: Some(file.to_owned()), value_from: None },
                            EnvVar {
                                name: "PYTHONDONTWRITEBYTECODE".into(),
                                value: Some("1".into()),
                                value_from: None,
                            },
                        ]),
                        resources: Some(ResourceRequirements {
                            requests: Some(resources),
                            limits: Some(limits),
                            ..Default::default()
                        }),
                        security_context: Some(security::container(true)),
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: "data".into(),
                                mount_path: APP_DIR.into(),
                                read_only: Some(true),
                                ..Default::default()
                            },
                            VolumeMount { name: "backup".into(), mount_path: BACKUP_DIR.into(), ..Default::default() },
                        ]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        Volume {
                            name: "data".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: names::pvc(id),
                                read_only: Some(true),
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: "backup".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: config.backup_pvc.clone(),
                                read_only: Some(false),
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Where a backup Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Still running (or not yet scheduled).
    Running,
    /// Completed: the archive is written.
    Succeeded,
    /// Gave up; the reason from its `Failed` condition.
    Failed(String),
}

/// Reads a Job's outcome from its status conditions (falling back to the
/// `succeeded`/`failed` counters when no condition is set yet).
pub fn outcome(job: &Job) -> JobOutcome {
    let Some(status) = job.status.as_ref() else { return JobOutcome::Running };
    for c in status.conditions.iter().flatten() {
        if c.status == "True" && c.type_ == "Complete" {
            return JobOutcome::Succeeded;
        }
        if c.status == "True" && c.type_ == "Failed" {
            let why = [c.reason.as_deref(), c.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            return JobOutcome::Failed(if why.is_empty() { "backup job failed".into() } else { why });
        }
    }
    if status.succeeded.unwrap_or(0) > 0 {
        return JobOutcome::Succeeded;
    }
    let backoff = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
    if status.failed.unwrap_or(0) > backoff {
        return JobOutcome::Failed("backup job failed: backoff limit exceeded".into());
    }
    JobOutcome::Running
}

/// The backup file a Job writes, from its annotation.
pub fn file_of(job: &Job) -> Option<String> {
    job.metadata.annotations.as_ref()?.get(names::BACKUP_FILE_ANNOTATION).cloned()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};

    use super::*;

    fn id() -> SessionId {
        SessionId::parse("0fa6debc").expect("valid")
    }

    #[test]
    fn file_name_has_the_old_shape() {
        let at: jiff::Timestamp = "2025-11-20T13:08:29Z".parse().expect("ts");
        assert_eq!(file_name(&id(), at), "app-0fa6debc-20251120-130829.zip");
    }

    #[test]
    fn outcome_follows_conditions_then_counters() {
        let mut j = job(&K8sConfig::default(), &id(), 3, "f.zip");
        assert_eq!(file_of(&j).as_deref(), Some("f.zip"));
        assert_eq!(outcome(&j), JobOutcome::Running);
        let cond = |t: &str, reason: Option<&str>| JobCondition {
            type_: t.into(),
            status: "True".into(),
            reason: reason.map(str::to_owned),
            ..Default::default()
        };
        j.status = Some(JobStatus { conditions: Some(vec![cond("Complete", None)]), ..Default::default() });
        assert_eq!(outcome(&j), JobOutcome::Succeeded);
        j.status = Some(JobStatus {
            conditions: Some(vec![cond("Failed", Some("BackoffLimitExceeded"))]),
            ..Default::default()
        });
        assert_eq!(outcome(&j), JobOutcome::Failed("BackoffLimitExceeded".into()));
        j.status = Some(JobStatus { succeeded: Some(1), ..Default::default() });
        assert_eq!(outcome(&j), JobOutcome::Succeeded);
        j.status = Some(JobStatus { failed: Some(3), ..Default::default() });
        assert!(matches!(outcome(&j), JobOutcome::Failed(_)));
        j.status = Some(JobStatus { failed: Some(1), active: Some(1), ..Default::default() });
        assert_eq!(outcome(&j), JobOutcome::Running);
    }
}
