//! Drift: what differs between the sessions Redis knows and the objects the
//! cluster holds. Pure: [`compare`] takes the live sessions and what one
//! list call per kind returned, and says which sessions need a converge job
//! (origin `drift`) and which objects are orphans. A running session whose
//! workspace pod has not been ready for longer than `READY_TIMEOUT` counts
//! as drift too ([`stuck`], [`unready_since`]; `now` is passed in).
//!
//! Sessions with a job in flight (status not the settled one for their
//! desired state) are left alone: that job converges them. Orphans are
//! only reported, never deleted here: a Redis that lost its data must not
//! delete users' volumes.

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;
use proto_types::{Command, DesiredState, SessionId, SessionState};

/// A live session as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Its id.
    pub id: SessionId,
    /// Observed status.
    pub status: SessionState,
    /// Desired state.
    pub desired: DesiredState,
}

/// What the list calls returned, keyed by the objects' session label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Deployment `spec.replicas` by session.
    pub deployments: HashMap<String, i32>,
    /// Sessions with a PersistentVolumeClaim.
    pub pvcs: HashSet<String>,
    /// Sessions with a Service.
    pub services: HashSet<String>,
    /// Every listed object, by session.
    pub names: HashMap<String, Vec<Listed>>,
    /// Sessions whose workspace pods are all not ready: since when (ms), the
    /// earliest such pod's. Absent when a pod is ready or there is none.
    pub unready_since: HashMap<String, u64>,
}

/// One listed session object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its uid (the precondition of a delete).
    pub uid: Option<String>,
    /// The fencing token it carries (0 when none).
    pub fence: u64,
}

impl std::fmt::Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// The kinds a resync lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `v1` PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// `v1` Service.
    Service,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::Service => "Service",
        }
    }
}

/// Since when (ms) `pod` has not been ready: its `Ready` condition's last
/// transition when that is not `True`, else (no condition yet) its creation
/// time. `None` when it is ready, or when it carries no time at all.
pub fn unready_since(pod: &Pod) -> Option<u64> {
    let ms = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| u64::try_from(t.0.as_millisecond()).ok();
    let ready =
        pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => None,
        Some(c) => c
            .last_transition_time
            .as_ref()
            .and_then(ms)
            .or_else(|| pod.metadata.creation_timestamp.as_ref().and_then(ms)),
        None => pod.metadata.creation_timestamp.as_ref().and_then(ms),
    }
}

/// Whether `pod`'s `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a workspace not ready since `since_ms` is stuck at `now_ms`:
/// not ready for longer than `timeout_ms` (0: never).
pub fn stuck(since_ms: Option<u64>, now_ms: u64, timeout_ms: u64) -> bool {
    timeout_ms > 0 && since_ms.is_some_and(|since| now_ms.saturating_sub(since) > timeout_ms)
}

/// What a resync should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPlan {
    /// Sessions to converge, with the command that re-asserts their desired state.
    pub converge: Vec<(SessionId, Command)>,
    /// `kind/name` of objects whose session is unknown or deleted, sorted.
    pub orphans: Vec<String>,
    /// The session labels those orphans carry, sorted.
    pub orphan_sessions: Vec<String>,
}

/// Compares `live` sessions with the `cluster` at `now_ms`; a running
/// session whose pods have not been ready for longer than
/// `ready_timeout_ms` (0: never) differs too.
pub fn compare(live: &[Live], cluster: &Cluster, now_ms: u64, ready_timeout_ms: u64) -> DriftPlan {
    let mut plan = DriftPlan::default();
    let known: HashSet<&str> = live.iter().map(|l| l.id.as_str()).collect();
    for l in live {
        let id = l.id.as_str();
        let (want, command) = match (l.status, l.desired) {
            (SessionState::Running, DesiredState::Running) => (1, Command::Wake),
            (SessionState::Sleeping, DesiredState::Sleeping) => (0, Command::Sleep),
            _ => continue,
        };
        let unready = want == 1 && stuck(cluster.unready_since.get(id).copied(), now_ms, ready_timeout_ms);
        let differs = cluster.deployments.get(id) != Some(&want)
            || !cluster.pvcs.contains(id)
            || !cluster.services.contains(id)
            || unready;
        if differs {
            plan.converge.push((l.id.clone(), command));
        }
    }
    let orphaned: Vec<(&String, &Vec<Listed>)> =
        cluster.names.iter().filter(|(session, _)| !known.contains(session.as_str())).collect();
    let orphans: BTreeSet<String> =
        orphaned.iter().flat_map(|(_, names)| names.iter().map(Listed::to_string)).collect();
    let sessions: BTreeSet<String> = orphaned.iter().map(|(s, _)| (*s).clone()).collect();
    plan.orphans = orphans.into_iter().collect();
    plan.orphan_sessions = sessions.into_iter().collect();
    plan
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    const NOW: u64 = 1_700_000_600_000;
    const TIMEOUT: u64 = 300_000;

    fn live(id: &str, status: SessionState, desired: DesiredState) -> Live {
        Live { id: SessionId::parse(id).expect("valid"), status, desired }
    }

    fn complete(ids: &[(&str, i32)]) -> Cluster {
        let mut c = Cluster::default();
        for (id, replicas) in ids {
            c.deployments.insert((*id).to_owned(), *replicas);
            c.pvcs.insert((*id).to_owned());
            c.services.insert((*id).to_owned());
            let listed = Listed { kind: Kind::Deployment, name: format!("ws-{id}"), uid: None, fence: 1 };
            c.names.insert((*id).to_owned(), vec![listed]);
        }
        c
    }

    #[test]
    fn matching_sessions_need_nothing() {
        let l = [
            live("a", SessionState::Running, DesiredState::Running),
            live("b", SessionState::Sleeping, DesiredState::Sleeping),
        ];
        assert_eq!(compare(&l, &complete(&[("a", 1), ("b", 0)]), NOW, TIMEOUT), DriftPlan::default());
    }

    #[test]
    fn missing_objects_or_wrong_replicas_are_converged() {
        let l = [
            live("a", SessionState::Running, DesiredState::Running),
            live("b", SessionState::Sleeping, DesiredState::Sleeping),
            live("c", SessionState::Running, DesiredState::Running),
        ];
        let mut c = complete(&[("a", 1), ("b", 1), ("c", 1)]);
        c.deployments.remove("a");
        c.services.remove("c");
        let plan = compare(&l, &c, NOW, TIMEOUT);
        let ids: Vec<(&str, Command)> = plan.converge.iter().map(|(id, c)| (id.as_str(), *c)).collect();
        assert_eq!(ids, [("a", Command::Wake), ("b", Command::Sleep), ("c", Command::Wake)]);
    }

    #[test]
    fn an_empty_cluster_recreates_live_and_sleeping_sessions_alike() {
        let l = [
            live("a", SessionState::Running, DesiredState::Running),
            live("b", SessionState::Sleeping, DesiredState::Sleeping),
        ];
        assert_eq!(compare(&l, &Cluster::default(), NOW, TIMEOUT).converge.len(), 2);
    }

    #[test]
    fn sessions_with_a_job_in_flight_are_left_to_it() {
        let l = [
            live("a", SessionState::Waking, DesiredState::Running),
            live("b", SessionState::Running, DesiredState::Sleeping),
        ];
        assert!(compare(&l, &Cluster::default(), NOW, TIMEOUT).converge.is_empty());
    }

    #[test]
    fn objects_of_unknown_sessions_are_orphans() {
        let l = [live("a", SessionState::Running, DesiredState::Running)];
        let plan = compare(&l, &complete(&[("a", 1), ("zz", 1)]), NOW, TIMEOUT);
        assert!(plan.converge.is_empty());
        assert_eq!(plan.orphans, ["Deployment/ws-zz"]);
        assert_eq!(plan.orphan_sessions, ["zz"]);
    }

    #[test]
    fn a_running_session_not_ready_past_the_timeout_is_converged_and_before_it_is_not() {
        let l = [
            live("a", SessionState::Running, DesiredState::Running),
            live("b", SessionState::Sleeping, DesiredState::Sleeping),
        ];
        let mut c = complete(&[("a", 1), ("b", 0)]);
        c.unready_since.insert("a".into(), NOW - TIMEOUT);
        c.unready_since.insert("b".into(), 0);
        assert!(compare(&l, &c, NOW, TIMEOUT).converge.is_empty(), "exactly the timeout is not past it");
        let plan = compare(&l, &c, NOW + 1, TIMEOUT);
        let ids: Vec<(&str, Command)> = plan.converge.iter().map(|(id, c)| (id.as_str(), *c)).collect();
        assert_eq!(ids, [("a", Command::Wake)], "a sleeping session has no pod to wait for");
        assert!(compare(&l, &c, NOW + 1, 0).converge.is_empty(), "0 turns it off");
    }

    #[test]
    fn stuck_needs_a_time_and_a_timeout() {
        assert!(!stuck(None, NOW, TIMEOUT));
        assert!(!stuck(Some(NOW + 5), NOW, TIMEOUT), "a clock behind the pod's is not stuck");
        assert!(stuck(Some(NOW - TIMEOUT - 1), NOW, TIMEOUT));
    }

    fn pod(created_ms: Option<i64>, ready: Option<(&str, Option<i64>)>) -> Pod {
        let time = |ms: i64| Time(jiff::Timestamp::from_millisecond(ms).expect("valid"));
        let mut p = Pod::default();
        p.metadata.creation_timestamp = created_ms.map(time);
        p.status = ready.map(|(status, at)| PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: status.into(),
                last_transition_time: at.map(time),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn unready_since_reads_the_ready_condition_then_the_creation_time() {
        assert_eq!(unready_since(&pod(Some(1_000), Some(("True", Some(2_000))))), None);
        assert_eq!(unready_since(&pod(Some(1_000), Some(("False", Some(2_000))))), Some(2_000));
        assert_eq!(unready_since(&pod(Some(1_000), Some(("Unknown", None)))), Some(1_000));
        assert_eq!(unready_since(&pod(Some(1_000), None)), Some(1_000));
        assert_eq!(unready_since(&pod(None, None)), None);
        assert!(is_ready(&pod(None, Some(("True", None)))));
        assert!(!is_ready(&pod(Some(1_000), Some(("False", None)))));
        assert!(!is_ready(&pod(Some(1_000), None)));
    }
}
