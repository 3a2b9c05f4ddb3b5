//! Drift: what differs between the sessions Redis knows and the objects the
//! cluster holds. Pure: [`compare`] takes the live sessions and what one
//! list call per kind returned, and says which sessions need a converge job
//! (origin `drift`) and which objects are orphans.
//!
//! Sessions with a job in flight (status not the settled one for their
//! desired state) are left alone: that job converges them. Orphans are
//! only reported, never deleted here: a Redis that lost its data must not
//! delete users' volumes.

use std::collections::{BTreeSet, HashMap, HashSet};

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
    /// `kind/name` of every listed object, by session.
    pub names: HashMap<String, Vec<String>>,
}

/// What a resync should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPlan {
    /// Sessions to converge, with the command that re-asserts their desired state.
    pub converge: Vec<(SessionId, Command)>,
    /// `kind/name` of objects whose session is unknown or deleted, sorted.
    pub orphans: Vec<String>,
}

/// Compares `live` sessions with the `cluster`.
pub fn compare(live: &[Live], cluster: &Cluster) -> DriftPlan {
    let mut plan = DriftPlan::default();
    let known: HashSet<&str> = live.iter().map(|l| l.id.as_str()).collect();
    for l in live {
        let id = l.id.as_str();
        let (want, command) = match (l.status, l.desired) {
            (SessionState::Running, DesiredState::Running) => (1, Command::Wake),
            (SessionState::Sleeping, DesiredState::Sleeping) => (0, Command::Sleep),
            _ => continue,
        };
        let differs =
            cluster.deployments.get(id) != Some(&want) || !cluster.pvcs.contains(id) || !cluster.services.contains(id);
        if differs {
            plan.converge.push((l.id.clone(), command));
        }
    }
    let orphans: BTreeSet<String> = cluster
        .names
        .iter()
        .filter(|(session, _)| !known.contains(session.as_str()))
        .flat_map(|(_, names)| names.iter().cloned())
        .collect();
    plan.orphans = orphans.into_iter().collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(id: &str, status: SessionState, desired: DesiredState) -> Live {
        Live { id: SessionId::parse(id).expect("valid"), status, desired }
    }

    fn complete(ids: &[(&str, i32)]) -> Cluster {
        let mut c = Cluster::default();
        for (id, replicas) in ids {
            c.deployments.insert((*id).to_owned(), *replicas);
            c.pvcs.insert((*id).to_owned());
            c.services.insert((*id).to_owned());
            c.names.insert((*id).to_owned(), vec![format!("Deployment/ws-{id}")]);
        }
        c
    }

    #[test]
    fn matching_sessions_need_nothing() {
        let l = [
            live("a", SessionState::Running, DesiredState::Running),
            live("b", SessionState::Sleeping, DesiredState::Sleeping),
        ];
        assert_eq!(compare(&l, &complete(&[("a", 1), ("b", 0)])), DriftPlan::default());
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
        let plan = compare(&l, &c);
        let ids: Vec<(&str, Command)> = plan.converge.iter().map(|(id, c)| (id.as_str(), *c)).collect();
        assert_eq!(ids, [("a", Command::Wake), ("b", Command::Sleep), ("c", Command::Wake)]);
    }

    #[test]
    fn an_empty_cluster_recreates_live_and_sleeping_sessions_alike() {
        let l = [
            live("a", SessionState::Running, DesiredState::Running),
            live("b", SessionState::Sleeping, DesiredState::Sleeping),
        ];
        assert_eq!(compare(&l, &Cluster::default()).converge.len(), 2);
    }

    #[test]
    fn sessions_with_a_job_in_flight_are_left_to_it() {
        let l = [
            live("a", SessionState::Waking, DesiredState::Running),
            live("b", SessionState::Running, DesiredState::Sleeping),
        ];
        assert!(compare(&l, &Cluster::default()).converge.is_empty());
    }

    #[test]
    fn objects_of_unknown_sessions_are_orphans() {
        let l = [live("a", SessionState::Running, DesiredState::Running)];
        let plan = compare(&l, &complete(&[("a", 1), ("zz", 1)]));
        assert!(plan.converge.is_empty());
        assert_eq!(plan.orphans, ["Deployment/ws-zz"]);
    }
}
