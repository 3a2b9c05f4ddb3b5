//! What to do with one orphaned session's objects when the worker runs with
//! `RESYNC_DELETE_ORPHANS=true` (pure: [`plan`]). The Deployment and the
//! Service go at once; the PersistentVolumeClaim only once a backup Job of
//! it has succeeded: the first resync creates the Job, a later one (or the
//! same, if it is already done) deletes the claim. A failed backup keeps
//! the claim and is reported. Carrying it out is `resync.rs`'s job.
//!
//! Not here: deciding what is orphaned (`drift.rs`).

use super::drift::{Kind, Listed};
use crate::k8s::backup::JobOutcome;

/// The steps for one orphaned session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanSteps {
    /// Objects to delete now (the claim only after its backup succeeded).
    pub delete: Vec<Listed>,
    /// Create the backup Job of the claim (none exists yet).
    pub create_backup: bool,
    /// The claim's backup failed: it is kept, with this reason.
    pub backup_failed: Option<String>,
}

/// The steps for an orphaned session's `objects`, given its backup Job's
/// outcome (`None`: no such Job).
pub fn plan(objects: &[Listed], backup: Option<&JobOutcome>) -> OrphanSteps {
    let mut steps = OrphanSteps::default();
    for o in objects {
        if o.kind != Kind::PersistentVolumeClaim {
            steps.delete.push(o.clone());
            continue;
        }
        match backup {
            None => steps.create_backup = true,
            Some(JobOutcome::Running) => {}
            Some(JobOutcome::Succeeded) => steps.delete.push(o.clone()),
            Some(JobOutcome::Failed(why)) => steps.backup_failed = Some(why.clone()),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: Kind, name: &str) -> Listed {
        Listed { kind, name: name.into(), uid: Some(format!("uid-{name}")), fence: 3 }
    }

    fn all() -> Vec<Listed> {
        vec![obj(Kind::Deployment, "ws-x"), obj(Kind::PersistentVolumeClaim, "ws-x-data"), obj(Kind::Service, "ws-x")]
    }

    fn names(s: &OrphanSteps) -> Vec<String> {
        s.delete.iter().map(Listed::to_string).collect()
    }

    #[test]
    fn without_a_backup_the_claim_is_kept_and_a_backup_started() {
        let s = plan(&all(), None);
        assert_eq!(names(&s), ["Deployment/ws-x", "Service/ws-x"]);
        assert!(s.create_backup);
        let s = plan(&all(), Some(&JobOutcome::Running));
        assert_eq!(names(&s), ["Deployment/ws-x", "Service/ws-x"]);
        assert!(!s.create_backup);
    }

    #[test]
    fn the_claim_goes_only_after_its_backup_succeeded() {
        let s = plan(&all(), Some(&JobOutcome::Succeeded));
        assert_eq!(names(&s), ["Deployment/ws-x", "PersistentVolumeClaim/ws-x-data", "Service/ws-x"]);
        assert_eq!((s.create_backup, s.backup_failed), (false, None));
    }

    #[test]
    fn a_failed_backup_keeps_the_claim_and_says_why() {
        let s = plan(&all(), Some(&JobOutcome::Failed("BackoffLimitExceeded".into())));
        assert_eq!(names(&s), ["Deployment/ws-x", "Service/ws-x"]);
        assert_eq!(s.backup_failed.as_deref(), Some("BackoffLimitExceeded"));
    }

    #[test]
    fn no_claim_needs_no_backup() {
        let s = plan(&[obj(Kind::Service, "ws-x")], None);
        assert_eq!(names(&s), ["Service/ws-x"]);
        assert!(!s.create_backup);
    }
}
