//! The backup Job of a delete: pure builder, the backup file name, how to
//! read a Job's outcome, and the verified archive it reports.
//!
//! The Job mounts the session PVC read-only at `/app` and the shared backup
//! PVC at `/backup`, and writes `/backup/app-{uuid}-{YYYYmmdd-HHMMSS}-g{generation}.zip`
//! (to a hidden `.partial` file first, renamed when complete and verified,
//! so a half-written or unreadable archive never carries the final name).
//! The image needs only `python3` (stock `alpine`/`busybox` have no `zip`):
//! the program ([`PROGRAM`]) walks `/app` itself, stores entries under
//! `app/` (deflate), stores a symlink *as a symlink* (its target text, never
//! followed, as `zip --symlinks` does, so a link to outside the volume or a
//! dangling one neither leaks nor fails the backup), and skips sockets and
//! FIFOs. It then re-opens the archive and tests every entry's CRC
//! (`ZipFile.testzip`), hashes it, and writes `{"size_bytes":N,"sha256":"..."}`
//! to its termination message (`/dev/termination-log`, policy `File`),
//! which [`report_of`] reads back from the Job's pod. The timestamp is
//! chosen once, when the Job is first created, and stored in the
//! [`names::BACKUP_FILE_ANNOTATION`] annotation; every later attempt reads it
//! back from the Job, so retries agree on one file name.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proto_types::SessionId;

use super::k8s_config::K8sConfig;
use super::names;
use super::objects::APP_DIR;
use super::security;

/// Name of the backup container.
pub const CONTAINER: &str = "backup";

/// Where the backup PVC is mounted.
pub const BACKUP_DIR: &str = "/backup";

/// Where the backup container writes its report (the Kubernetes default).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// The Python program run by the backup container (see the module docs).
pub const PROGRAM: &str = r#"import hashlib, json, os, stat, sys, zipfile
name = os.environ["BACKUP_FILE"]
final = os.path.join("/backup", name)
tmp = os.path.join("/backup", "." + name + ".partial")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    z.write("/app", "app")
    for top, dirs, files in os.walk("/app"):
        rel = "app" + top[len("/app"):]
        for n in sorted(dirs) + sorted(files):
            path, arc = os.path.join(top, n), rel + "/" + n
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                info = zipfile.ZipInfo(arc)
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                z.writestr(info, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                z.write(path, arc)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
with zipfile.ZipFile(tmp) as z:
    bad = z.testzip()
    if bad is not None:
        sys.exit("archive entry " + bad + " failed its CRC check")
h = hashlib.sha256()
with open(tmp, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
size = os.path.getsize(tmp)
os.replace(tmp, final)
report = json.dumps({"size_bytes": size, "sha256": h.hexdigest()})
with open("/dev/termination-log", "w") as f:
    f.write(report)
print("wrote", final, report)
"#;

/// The backup file of request `generation` (a delete or an on-demand
/// backup) of a session at a UTC time: the old `app-{uuid}-{ts}` shape plus
/// the generation, so two backups of one session within one second (two
/// deletes, a delete beside an on-demand backup) never share a file.
pub fn file_name(id: &SessionId, generation: u64, at: jiff::Timestamp) -> String {
    format!("app-{id}-{}-g{generation}.zip", at.strftime("%Y%m%d-%H%M%S"))
}

/// The backup Job of request `generation` (a delete or an on-demand
/// backup), writing `file`.
pub fn job(config: &K8sConfig, id: &SessionId, generation: u64, file: &str) -> Job {
    let meta = ObjectMeta {
        name: Some(names::backup_job(id, generation)),
        namespace: Some(config.namespace.clone()),
        labels: Some(names::component_labels(id, "backup")),
        annotations: Some(BTreeMap::from([(names::BACKUP_FILE_ANNOTATION.to_owned(), file.to_owned())])),
        ..Default::default()
    };
    let tool = ToolJob {
        container: CONTAINER,
        program: PROGRAM,
        env: vec![("BACKUP_FILE", file.to_owned())],
        data: Some((names::pvc(id), true)),
        backup_read_only: false,
        attempts: 3,
    };
    tool.build(config, meta)
}

/// A one-shot Python Job on the backup volume (at `/backup`), with or
/// without a session volume (at `/app`): the backup, restore and prune Jobs.
pub(super) struct ToolJob {
    /// Name of its one container.
    pub(super) container: &'static str,
    /// The program, run by `python3 -c`.
    pub(super) program: &'static str,
    /// Its environment.
    pub(super) env: Vec<(&'static str, String)>,
    /// The session volume at `/app`: its claim, and whether read-only.
    pub(super) data: Option<(String, bool)>,
    /// Whether the backup volume is mounted read-only.
    pub(super) backup_read_only: bool,
    /// Pod attempts before the Job fails (`backoffLimit` + 1).
    pub(super) attempts: i32,
}

impl ToolJob {
    /// The Job, named and labelled by `meta`; its pods carry the same labels.
    pub(super) fn build(self, config: &K8sConfig, meta: ObjectMeta) -> Job {
        let labels = meta.labels.clone();
        let quantities = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(memory.to_owned())),
            ])
        };
        let mut env: Vec<EnvVar> = self
            .env
            .into_iter()
            .map(|(name, value)| EnvVar { name: name.into(), value: Some(value), value_from: None })
            .collect();
        env.push(EnvVar { name: "PYTHONDONTWRITEBYTECODE".into(), value: Some("1".into()), value_from: None });
        let claim = |name: &str, claim_name: String, read_only: bool| Volume {
            name: name.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name, read_only: Some(read_only) }),
            ..Default::default()
        };
        let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: Some(read_only),
            ..Default::default()
        };
        let (mut mounts, mut volumes) = (Vec::new(), Vec::new());
        if let Some((pvc, read_only)) = self.data {
            mounts.push(mount("data", APP_DIR, read_only));
            volumes.push(claim("data", pvc, read_only));
        }
        mounts.push(mount("backup", BACKUP_DIR, self.backup_read_only));
        volumes.push(claim("backup", config.backup_pvc.clone(), self.backup_read_only));
        Job {
            metadata: meta,
            spec: Some(JobSpec {
                backoff_limit: Some((self.attempts - 1).max(0)),
                ttl_seconds_after_finished: Some(config.backup_job_ttl_secs),
                active_deadline_seconds: Some(
                    i64::try_from(config.backup_timeout.as_secs()).unwrap_or(i64::MAX).max(1),
                ),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels, ..Default::default() }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        automount_service_account_token: Some(false),
                        enable_service_links: Some(false),
                        security_context: Some(security::pod()),
                        containers: vec![Container {
                            name: self.container.into(),
                            image: Some(config.backup_image.clone()),
                            command: Some(vec!["python3".into(), "-c".into(), self.program.into()]),
                            termination_message_path: Some(TERMINATION_LOG.into()),
                            termination_message_policy: Some("File".into()),
                            env: Some(env),
                            resources: Some(ResourceRequirements {
                                requests: Some(quantities(&config.cpu_request, &config.memory_request)),
                                limits: Some(quantities(&config.cpu_limit, &config.memory_limit)),
                                ..Default::default()
                            }),
                            security_context: Some(security::container(true)),
                            volume_mounts: Some(mounts),
                            ..Default::default()
                        }],
                        volumes: Some(volumes),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
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

/// What a backup Job reports about its verified archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveReport {
    /// Size of the archive in bytes.
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the archive.
    pub sha256: String,
}

/// Parses a termination message into an [`ArchiveReport`]; the reason on
/// anything else.
pub fn parse_report(message: &str) -> Result<ArchiveReport, String> {
    let report: ArchiveReport = serde_json::from_str(message.trim())
        .map_err(|e| format!("its termination message is not an archive report ({e}): {:?}", clip(message)))?;
    if report.sha256.len() != 64 || !report.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("its termination message has no hex sha256: {:?}", clip(&report.sha256)));
    }
    Ok(report)
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The report of the attempt that succeeded, from the Job's pods
/// (`containerStatuses[].state.terminated.message`); the reason when no
/// pod succeeded or its message is missing or malformed.
pub fn report_of(pods: &[Pod]) -> Result<ArchiveReport, String> {
    let succeeded =
        pods.iter().flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten())).find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (c.name == CONTAINER && t.exit_code == 0).then_some(t)
        });
    let Some(terminated) = succeeded else {
        return Err("no pod of the backup job shows a successful exit".into());
    };
    match terminated.message.as_deref().filter(|m| !m.trim().is_empty()) {
        None => Err("its pod left no termination message".into()),
        Some(m) => parse_report(m),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};

    use super::*;

    fn id() -> SessionId {
        SessionId::parse("0fa6debc").expect("valid")
    }

    #[test]
    fn file_name_is_the_old_shape_plus_the_generation() {
        let at: jiff::Timestamp = "2025-11-20T13:08:29Z".parse().expect("ts");
        assert_eq!(file_name(&id(), 4, at), "app-0fa6debc-20251120-130829-g4.zip");
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

    /// A pod whose container `name` terminated with `exit_code` and `message`.
    pub(crate) fn pod(name: &str, exit_code: i32, message: Option<&str>) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: name.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code,
                            message: message.map(str::to_owned),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_succeeded_attempt_reports_size_and_checksum() {
        let msg = format!(r#"{{"size_bytes": 5243012, "sha256": "{SHA}"}}"#);
        let pods = [pod(CONTAINER, 1, None), pod(CONTAINER, 0, Some(&msg))];
        assert_eq!(report_of(&pods), Ok(ArchiveReport { size_bytes: 5_243_012, sha256: SHA.into() }));
    }

    #[test]
    fn a_missing_or_bad_message_is_a_reason_not_a_panic() {
        let cases: [(Vec<Pod>, &str); 7] = [
            (vec![], "no pod"),
            (vec![pod(CONTAINER, 2, Some("{}"))], "no pod"),
            (vec![pod("other", 0, Some("{}"))], "no pod"),
            (vec![pod(CONTAINER, 0, None)], "no termination message"),
            (vec![pod(CONTAINER, 0, Some("  \n"))], "no termination message"),
            (vec![pod(CONTAINER, 0, Some("Traceback (most recent call last)"))], "not an archive report"),
            (vec![pod(CONTAINER, 0, Some(r#"{"size_bytes":-1,"sha256":"x"}"#))], "not an archive report"),
        ];
        for (pods, want) in cases {
            let why = report_of(&pods).expect_err(want);
            assert!(why.contains(want), "{why:?} should say {want:?}");
        }
        let short = parse_report(r#"{"size_bytes":1,"sha256":"abc"}"#).expect_err("short sha");
        assert!(short.contains("no hex sha256"), "{short}");
        let upper = parse_report(&format!(r#"{{"size_bytes":1,"sha256":"{}"}}"#, SHA.to_uppercase()));
        assert!(upper.is_err(), "upper-case hex is not what the job writes");
        let extra = parse_report(&format!(r#"{{"size_bytes":1,"sha256":"{SHA}","x":1}}"#));
        assert!(extra.is_err(), "unknown fields are refused");
    }

    #[test]
    fn the_job_reports_through_a_file_termination_message() {
        let j = job(&K8sConfig::default(), &id(), 3, "f.zip");
        let c = &j.spec.expect("spec").template.spec.expect("pod").containers[0];
        assert_eq!(c.termination_message_path.as_deref(), Some(TERMINATION_LOG));
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(c.command.as_ref().map(|c| c[0].as_str()), Some("python3"));
    }

    /// Every archive name taken within one second (controlled time, any sub-second offset) is
    /// distinct: each session's deletes and on-demand backups (one per generation), for
    /// random ids and for ids built to look like another name's suffix.
    #[test]
    fn backup_file_names_within_one_second_are_distinct() {
        let second: jiff::Timestamp = "2026-12-02T17:22:35Z".parse().expect("ts");
        let mut ids: Vec<SessionId> =
            ["a", "a-g1", "a-20261202-172235", "a-20261202-172235-g1", "g1", "1", "a-1", "a-g", "ab"]
                .iter()
                .map(|s| SessionId::parse(s).expect("valid"))
                .collect();
        ids.extend((0u32..200).map(|i| SessionId::from_random(i.wrapping_mul(2_654_435_761).to_be_bytes())));
        let mut names = std::collections::BTreeSet::new();
        let mut total = 0;
        for (k, id) in ids.iter().enumerate() {
            // A sub-second offset of its own for each name, never leaving the second.
            let at = |n: u64| {
                let nanos = (k as u64).wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729)) % 1_000_000_000;
                second + jiff::SignedDuration::from_nanos(i64::try_from(nanos).expect("below one second"))
            };
            for generation in [0, 1, 2, 9, 10, 11, 99, 100, 101, 12_345, u64::MAX] {
                names.insert(file_name(id, generation, at(generation)));
                total += 1;
            }
        }
        assert_eq!(names.len(), total, "two backups within one second share an archive name");
        assert!(names.iter().all(|n| n.contains("-20261202-172235")), "all within the one second");
    }
}
