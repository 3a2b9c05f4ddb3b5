//! The prune Job of backup retention: pure builder and the file-name rule.
//!
//! Built like the backup Job ([`super::backup`]): same image
//! (`BACKUP_IMAGE`, `python3`), same `restricted` security context
//! (read-only root filesystem, no service-account token), same resources,
//! and the shared backup PVC mounted read-write at `/backup`, but no
//! session volume. Its program ([`PROGRAM`]) reads the file names from
//! `PRUNE_FILES` (a JSON list), refuses the whole list before touching
//! anything if one is not a plain file name (empty, `.`, `..`, a `/`, a
//! NUL: [`safe_name`], checked here too), and removes each name under
//! `/backup`; a missing file is not an error. At most [`MAX_FILES`] names
//! per Job; the name is unique per pass and part ([`job_name`]).
//! Not here: which files go ([`crate::sweeper::retention`]) and waiting
//! for the Job ([`crate::sweeper::prune`]).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::backup::ToolJob;
use super::k8s_config::K8sConfig;
use super::names;

/// Name of the prune container.
pub const CONTAINER: &str = "prune";

/// Most file names one prune Job is given.
pub const MAX_FILES: usize = 40;

/// Value of the component label of prune Jobs.
pub const COMPONENT: &str = "backup-prune";

/// The Python program run by the prune container (see the module docs).
pub const PROGRAM: &str = r#"import json, os, sys
names = json.loads(os.environ["PRUNE_FILES"])
if not isinstance(names, list):
    sys.exit("PRUNE_FILES is not a list")
for n in names:
    if not isinstance(n, str) or n in ("", ".", "..") or "/" in n or "\0" in n:
        sys.exit("refused file name " + repr(n))
removed = missing = 0
for n in names:
    try:
        os.remove(os.path.join("/backup", n))
        removed += 1
    except FileNotFoundError:
        missing += 1
print(json.dumps({"removed": removed, "missing": missing}))
"#;

/// A prune Job that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneJobError {
    /// A name that is not a plain file name.
    #[error("refusing to remove {0:?}: not a plain file name")]
    Unsafe(String),
    /// More names than one Job takes.
    #[error("{0} files for one prune job (at most {MAX_FILES})")]
    TooMany(usize),
}

/// Whether `name` is a plain file name directly under `/backup`: not
/// empty, not `.` or `..`, no `/` (so never absolute), no NUL, at most 255
/// bytes.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']) && name.len() <= 255
}

/// The Job name of part `part` of the pass started at `pass_ms`.
pub fn job_name(pass_ms: u64, part: usize) -> String {
    format!("sm-backup-prune-{pass_ms}-{part}")
}

/// The prune Job `name`, removing `files` from the backup volume.
pub fn job(config: &K8sConfig, name: &str, files: &[String]) -> Result<Job, PruneJobError> {
    if files.len() > MAX_FILES {
        return Err(PruneJobError::TooMany(files.len()));
    }
    if let Some(bad) = files.iter().find(|f| !safe_name(f)) {
        return Err(PruneJobError::Unsafe(bad.clone()));
    }
    let list = serde_json::to_string(files).expect("a list of strings always serializes");
    let labels = BTreeMap::from([
        (names::MANAGED_BY.to_owned(), names::SYSTEM.to_owned()),
        (names::PART_OF.to_owned(), names::SYSTEM.to_owned()),
        (names::COMPONENT.to_owned(), COMPONENT.to_owned()),
    ]);
    let meta = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    let tool = ToolJob {
        container: CONTAINER,
        program: PROGRAM,
        env: vec![("PRUNE_FILES", list)],
        data: None,
        backup_read_only: false,
        attempts: 3,
    };
    Ok(tool.build(config, meta))
}

/// The file names a prune Job was given (from its `PRUNE_FILES`).
pub fn files_of(job: &Job) -> Vec<String> {
    let value = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "PRUNE_FILES"))
        .and_then(|e| e.value.clone());
    value.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::backup::BACKUP_DIR;
    use super::super::security;
    use super::*;

    #[test]
    fn only_plain_file_names_are_safe() {
        for ok in ["app-x-20250101-000000.zip", ".app-x.zip.partial", "a..b", "..x"] {
            assert!(safe_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "/", "/etc/passwd", "../x", "a/b", "a/../../b", "x\0y", &"a".repeat(256)] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_job_lists_its_files_and_refuses_unsafe_or_too_many() {
        let files = vec!["a.zip".to_owned(), ".a.zip.partial".to_owned()];
        let j = job(&K8sConfig::default(), &job_name(1_700_000_000_000, 0), &files).unwrap();
        assert_eq!(j.metadata.name.as_deref(), Some("sm-backup-prune-1700000000000-0"));
        assert_eq!(files_of(&j), files);
        for bad in ["../a.zip", "/backup/a.zip", "..", ""] {
            let err = job(&K8sConfig::default(), "n", &[bad.to_owned()]).unwrap_err();
            assert_eq!(err, PruneJobError::Unsafe(bad.to_owned()));
        }
        let many: Vec<String> = (0..=MAX_FILES).map(|i| format!("{i}.zip")).collect();
        assert_eq!(job(&K8sConfig::default(), "n", &many).unwrap_err(), PruneJobError::TooMany(MAX_FILES + 1));
    }

    #[test]
    fn the_job_mounts_only_the_backup_volume_read_write_under_restricted() {
        let j = job(&K8sConfig::default(), "n", &["a.zip".to_owned()]).unwrap();
        let pod = j.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.security_context, Some(security::pod()));
        let volumes = pod.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("backup-pvc", Some(false)));
        let c = &pod.containers[0];
        assert_eq!(c.security_context, Some(security::container(true)));
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, BACKUP_DIR);
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].read_only, Some(false));
    }

    #[test]
    fn names_fit_dns_labels() {
        assert!(job_name(u64::MAX, usize::MAX).len() <= 63);
    }

    /// Runs the program with a real python3 (skipped when there is none).
    #[test]
    fn the_program_removes_listed_files_only_and_refuses_traversal() {
        let Ok(probe) = std::process::Command::new("python3").arg("-c").arg("pass").status() else { return };
        if !probe.success() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("backup");
        std::fs::create_dir(&backup).unwrap();
        for f in ["a.zip", "b.zip", "keep.zip"] {
            std::fs::write(backup.join(f), "x").unwrap();
        }
        std::fs::write(dir.path().join("outside"), "x").unwrap();
        let program = PROGRAM.replace("\"/backup\"", &format!("{:?}", backup.display().to_string()));
        let run = |files: &str| {
            std::process::Command::new("python3").arg("-c").arg(&program).env("PRUNE_FILES", files).output().unwrap()
        };
        let out = run(r#"["a.zip", "b.zip", "missing.zip"]"#);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"removed": 2, "missing": 1}"#);
        assert!(backup.join("keep.zip").exists() && !backup.join("a.zip").exists());
        for bad in [r#"["keep.zip", "../outside"]"#, r#"["/etc/hostname"]"#, r#"[".."]"#, r#""keep.zip""#] {
            let out = run(bad);
            assert!(!out.status.success(), "{bad} should be refused");
        }
        assert!(backup.join("keep.zip").exists() && dir.path().join("outside").exists(), "nothing removed on refusal");
    }
}
