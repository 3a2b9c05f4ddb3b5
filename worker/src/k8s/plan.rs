//! The pure planner: given the desired state and what exists in the cluster
//! ([`Observed`]), the [`Step`]s still to do.
//!
//! The executor loops *observe → plan → act*: it runs the leading action
//! steps, stops at the first wait, observes again and plans again, until the
//! plan is [`Step::Done`] or [`Step::Fail`]. Because the plan depends only
//! on what exists, a crash between any two steps, or a repeated job, simply
//! re-plans from the cluster's state and converges to the same end.
//!
//! Order matters in three places:
//! - sleep pauses KEDA (paused-replicas `"0"`) *before* scaling to zero, and
//!   wake scales to one *before* un-pausing, so KEDA never fights the user;
//! - delete backs up only once no workspace pod holds the ReadWriteOnce
//!   volume, and deletes nothing until the backup Job has succeeded *and*
//!   its pod reported a verified archive (size and checksum);
//! - the PVC is deleted last, with a uid precondition;
//! - an on-demand backup runs only once the session is asleep (no pod holds
//!   the volume), through the same backup Job, and leaves it asleep;
//! - a session created from a backup gets its PVC and the restore Job
//!   *before* its Deployment: no workspace starts until the files are back
//!   and verified, and a failed restore fails the session with its reason
//!   (no Deployment is ever created then). The Deployment's existence is
//!   what says the restore is done. From a snapshot backup there is no
//!   Job: the PVC, which names the snapshot in `dataSourceRef`, is applied
//!   only once the snapshot is `readyToUse` (a missing one fails the
//!   session), and the storage fills the volume before any pod mounts it;
//! - in snapshot mode a backup is a VolumeSnapshot of the volume no pod
//!   holds, taken at the same point as the archive, and nothing is deleted
//!   before it is `readyToUse`.
//!
//! Existing objects written under an older lease ([`Stale`]) are written
//! again, so after any job every object carries the newest token. A delete
//! never creates a workspace object: its apply steps only pause or scale
//! down what exists (the gate creates nothing for a delete but the backup
//! Job).
//!
//! [`Routing`] decides the Ingress: in `ingress` mode each session has one;
//! in `gateway` mode (the default) none is applied, and one left over from
//! `ingress` mode is deleted, so switching modes converges too. A running
//! outcome carries the Service's `clusterIP:port` as the upstream the
//! gateway proxies to.

use crate::executor::{Archive, Outcome};
use proto_types::{BackupKind, DesiredState, SessionState};

use super::backup::{ArchiveReport, JobOutcome};
use super::k8s_config::Routing;

/// The session's Deployment as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

/// The backup of the current request (a delete, or an on-demand backup)
/// as observed: its Job, or in snapshot mode its VolumeSnapshot (ready is
/// `Succeeded` with a report of its `restoreSize`; not ready is `Running`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupView {
    /// The backup's id (from the session and delete generation).
    pub id: String,
    /// An archive or a snapshot.
    pub kind: BackupKind,
    /// File named in the Job's annotation, or the VolumeSnapshot's name.
    pub file: Option<String>,
    /// Where the Job (or snapshot) is.
    pub outcome: JobOutcome,
    /// Once it succeeded: what its pod reported about the verified archive,
    /// or why there is no usable report.
    pub report: Option<Result<ArchiveReport, String>>,
    /// The last error the snapshot controller reported while not ready.
    pub error: Option<String>,
}

/// The restore of a session created from a backup, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreView {
    /// The backup restored from.
    pub backup_id: String,
    /// How far it is.
    pub progress: RestoreProgress,
}

/// How far a restore is, by the backup's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreProgress {
    /// An archive: the restore Job, once it exists (a failure carries the
    /// reason its pod reported, if any).
    Job(Option<JobOutcome>),
    /// A snapshot: whether it is `readyToUse` (`None`: it does not exist).
    /// Not read once the volume exists (it was made from the snapshot).
    Snapshot(Option<bool>),
}

/// Which existing objects carry an older lease's fencing token than this
/// job's (or none): they are written again so they carry ours, and a
/// stale holder's later write to any of them is refused by the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stale {
    /// The PVC.
    pub pvc: bool,
    /// The Deployment.
    pub deployment: bool,
    /// The Service.
    pub service: bool,
    /// The Ingress.
    pub ingress: bool,
    /// The ScaledObject.
    pub scaled_object: bool,
}

/// What exists in the cluster for one session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The PVC's uid, if the PVC exists.
    pub pvc_uid: Option<String>,
    /// The Deployment, if it exists.
    pub deployment: Option<DeploymentView>,
    /// Whether the Service exists.
    pub service: bool,
    /// The Service's `clusterIP:port`, once it has a cluster IP.
    pub upstream: Option<String>,
    /// Whether the Ingress exists.
    pub ingress: bool,
    /// The ScaledObject, if it exists: whether it carries paused-replicas.
    pub scaled_object_paused: Option<bool>,
    /// Workspace pods that still exist (in any phase).
    pub pods: usize,
    /// The backup Job of this request (only observed for a delete or an
    /// on-demand backup).
    pub backup: Option<BackupView>,
    /// The job is an on-demand backup of a sleeping session: once asleep,
    /// the volume is backed up (a request, not an observation; like the
    /// delete's backup it is named by the job's generation).
    pub on_demand_backup: bool,
    /// The session was created from a backup: its restore Job (a request
    /// with what is observed of it).
    pub restore: Option<RestoreView>,
    /// Existing objects written under an older lease.
    pub stale: Stale,
}

/// What a bounded wait is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// The Deployment has a ready replica.
    Ready,
    /// No workspace pod remains.
    PodsGone,
    /// The backup Job has finished.
    Backup,
    /// The restore Job has finished.
    Restore,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Server-side apply the PVC.
    ApplyPvc,
    /// Server-side apply the ScaledObject, paused (pinned to 0) or not.
    ApplyScaledObject {
        /// Whether to carry the paused-replicas annotation.
        paused: bool,
    },
    /// Server-side apply the Deployment with this many replicas.
    ApplyDeployment {
        /// Desired replicas.
        replicas: i32,
    },
    /// Server-side apply the Service.
    ApplyService,
    /// Server-side apply the Ingress.
    ApplyIngress,
    /// Remove the paused-replicas annotation (merge patch with null).
    UnpauseScaledObject,
    /// Create the backup of this delete or backup request: its Job, or in
    /// snapshot mode its VolumeSnapshot.
    CreateBackup,
    /// Create the restore Job of a session created from an archive backup.
    CreateRestore,
    /// Delete the ScaledObject.
    DeleteScaledObject,
    /// Delete the Ingress.
    DeleteIngress,
    /// Delete the Service.
    DeleteService,
    /// Delete the Deployment.
    DeleteDeployment,
    /// Delete the PVC, only if it still has this uid.
    DeletePvc {
        /// Precondition uid.
        uid: String,
    },
    /// Observe again after a pause, within the wait's bound.
    Wait(Wait),
    /// Converged.
    Done(Outcome),
    /// Cannot converge; retrying the same request cannot help.
    Fail {
        /// Why.
        reason: String,
    },
}

impl Step {
    /// Whether this step changes the cluster (as opposed to wait/finish).
    pub fn is_action(&self) -> bool {
        !matches!(self, Step::Wait(_) | Step::Done(_) | Step::Fail { .. })
    }
}

/// The steps that take `observed` to `desired`. The last step is always a
/// [`Step::Wait`], [`Step::Done`] or [`Step::Fail`].
pub fn plan(desired: DesiredState, observed: &Observed, routing: Routing) -> Vec<Step> {
    match desired {
        DesiredState::Running => plan_running(observed, routing),
        DesiredState::Sleeping => plan_sleeping(observed, routing),
        DesiredState::Deleted => plan_deleted(observed),
    }
}

/// The Ingress step, if one is needed: applied in `ingress` mode, a
/// leftover deleted in `gateway` mode.
fn ingress_step(o: &Observed, routing: Routing) -> Option<Step> {
    match (routing, o.ingress) {
        (Routing::Ingress, false) => Some(Step::ApplyIngress),
        (Routing::Ingress, true) if o.stale.ingress => Some(Step::ApplyIngress),
        (Routing::Gateway, true) => Some(Step::DeleteIngress),
        (Routing::Ingress, true) | (Routing::Gateway, false) => None,
    }
}

/// The restore still to do before the Deployment may exist: `None` when
/// there is nothing to restore or it is done (the Deployment exists, or the
/// restore Job succeeded), or, for a snapshot, when the volume may be made
/// from it now (the PVC applied next names it in `dataSourceRef`) or was.
fn restore_steps(o: &Observed) -> Option<Vec<Step>> {
    let r = o.restore.as_ref().filter(|_| o.deployment.is_none())?;
    let job = match &r.progress {
        RestoreProgress::Snapshot(_) if o.pvc_uid.is_some() => return None,
        RestoreProgress::Snapshot(Some(true)) => return None,
        RestoreProgress::Snapshot(Some(false)) => return Some(vec![Step::Wait(Wait::Restore)]),
        RestoreProgress::Snapshot(None) => {
            return Some(vec![Step::Fail {
                reason: format!("restore from backup {} failed: its VolumeSnapshot no longer exists", r.backup_id),
            }]);
        }
        RestoreProgress::Job(job) => job,
    };
    match job {
        None => {
            let mut steps = Vec::new();
            if o.pvc_uid.is_none() || o.stale.pvc {
                steps.push(Step::ApplyPvc);
            }
            steps.extend([Step::CreateRestore, Step::Wait(Wait::Restore)]);
            Some(steps)
        }
        Some(JobOutcome::Running) => Some(vec![Step::Wait(Wait::Restore)]),
        Some(JobOutcome::Failed(why)) => {
            Some(vec![Step::Fail { reason: format!("restore from backup {} failed: {why}", r.backup_id) }])
        }
        Some(JobOutcome::Succeeded) => None,
    }
}

fn plan_running(o: &Observed, routing: Routing) -> Vec<Step> {
    if let Some(steps) = restore_steps(o) {
        return steps;
    }
    let mut steps = Vec::new();
    if o.pvc_uid.is_none() || o.stale.pvc {
        steps.push(Step::ApplyPvc);
    }
    if o.deployment.as_ref().is_none_or(|d| d.replicas != 1) || o.stale.deployment {
        steps.push(Step::ApplyDeployment { replicas: 1 });
    }
    if !o.service || o.stale.service {
        steps.push(Step::ApplyService);
    }
    steps.extend(ingress_step(o, routing));
    match o.scaled_object_paused {
        None => steps.push(Step::ApplyScaledObject { paused: false }),
        Some(true) => steps.push(Step::UnpauseScaledObject),
        Some(false) if o.stale.scaled_object => steps.push(Step::ApplyScaledObject { paused: false }),
        Some(false) => {}
    }
    let ready = o.deployment.as_ref().map_or(0, |d| d.ready);
    if steps.is_empty() && ready >= 1 {
        steps.push(Step::Done(Outcome {
            status: SessionState::Running,
            replicas: clamp(ready),
            backup_file: None,
            upstream: o.upstream.clone(),
            archive: None,
        }));
    } else {
        steps.push(Step::Wait(Wait::Ready));
    }
    steps
}

fn plan_sleeping(o: &Observed, routing: Routing) -> Vec<Step> {
    if let Some(steps) = restore_steps(o) {
        return steps;
    }
    let mut steps = Vec::new();
    if o.pvc_uid.is_none() || o.stale.pvc {
        steps.push(Step::ApplyPvc);
    }
    // Pin KEDA first, so it cannot scale the workspace back up.
    if o.scaled_object_paused != Some(true) || o.stale.scaled_object {
        steps.push(Step::ApplyScaledObject { paused: true });
    }
    if o.deployment.as_ref().is_none_or(|d| d.replicas != 0) || o.stale.deployment {
        steps.push(Step::ApplyDeployment { replicas: 0 });
    }
    if !o.service || o.stale.service {
        steps.push(Step::ApplyService);
    }
    steps.extend(ingress_step(o, routing));
    if !steps.is_empty() || o.pods > 0 {
        steps.push(Step::Wait(Wait::PodsGone));
        return steps;
    }
    let archive = if o.on_demand_backup {
        match backup_steps(o, "the session stays asleep; ask again to retry") {
            Ok(archive) => Some(archive),
            Err(steps) => return steps,
        }
    } else {
        None
    };
    vec![Step::Done(Outcome {
        status: SessionState::Sleeping,
        replicas: 0,
        backup_file: None,
        upstream: None,
        archive,
    })]
}

/// The backup of a volume no pod holds: the steps still to take (create
/// the Job, wait, or fail with `then` telling what happens next), or the
/// verified archive once its Job succeeded and its pod reported one.
fn backup_steps(o: &Observed, then: &str) -> Result<Archive, Vec<Step>> {
    let Some(b) = o.backup.as_ref() else {
        return Err(vec![Step::CreateBackup, Step::Wait(Wait::Backup)]);
    };
    match (&b.outcome, &b.report) {
        (JobOutcome::Running, _) => Err(vec![Step::Wait(Wait::Backup)]),
        (JobOutcome::Failed(why), _) => Err(vec![Step::Fail { reason: format!("backup failed, {then}: {why}") }]),
        (JobOutcome::Succeeded, Some(Ok(r))) => Ok(Archive {
            id: b.id.clone(),
            kind: b.kind,
            location: b.file.clone().unwrap_or_default(),
            size_bytes: r.size_bytes,
            sha256: r.sha256.clone(),
        }),
        (JobOutcome::Succeeded, report) => {
            let why = match report {
                Some(Err(why)) => why.as_str(),
                _ => "no report was read",
            };
            Err(vec![Step::Fail {
                reason: format!("backup job succeeded but its archive is not verified, {then}: {why}"),
            }])
        }
    }
}

fn plan_deleted(o: &Observed) -> Vec<Step> {
    let mut steps = Vec::new();
    let backup_file = o.backup.as_ref().and_then(|b| b.file.clone());
    let archive;
    if let Some(uid) = &o.pvc_uid {
        // Stop the workspace: the backup pod needs the ReadWriteOnce volume.
        if o.scaled_object_paused == Some(false) {
            steps.push(Step::ApplyScaledObject { paused: true });
        }
        if o.deployment.as_ref().is_some_and(|d| d.replicas != 0) {
            steps.push(Step::ApplyDeployment { replicas: 0 });
        }
        if !steps.is_empty() || o.pods > 0 {
            steps.push(Step::Wait(Wait::PodsGone));
            return steps;
        }
        match backup_steps(o, "volume kept; delete again to retry") {
            Ok(a) => archive = Some(a),
            Err(steps) => return steps,
        }
        push_deletes(o, &mut steps);
        steps.push(Step::DeletePvc { uid: uid.clone() });
    } else {
        // No volume, so nothing to back up: remove whatever is left. A
        // verified archive still counts (a crash after the volume went).
        archive = backup_steps(o, "").ok();
        push_deletes(o, &mut steps);
    }
    steps.push(Step::Done(Outcome {
        status: SessionState::Deleted,
        replicas: 0,
        backup_file,
        upstream: None,
        archive,
    }));
    steps
}

fn push_deletes(o: &Observed, steps: &mut Vec<Step>) {
    if o.scaled_object_paused.is_some() {
        steps.push(Step::DeleteScaledObject);
    }
    if o.ingress {
        steps.push(Step::DeleteIngress);
    }
    if o.service {
        steps.push(Step::DeleteService);
    }
    if o.deployment.is_some() {
        steps.push(Step::DeleteDeployment);
    }
}

fn clamp(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
