//! Table tests of the planner: every desired state against the cluster
//! states a crash can leave behind. The tables run in `ingress` routing
//! (today's objects, the Ingress included); `gateway` routing has its own
//! table at the end.

use super::*;

fn dep(replicas: i32, ready: i32) -> Option<DeploymentView> {
    Some(DeploymentView { replicas, ready })
}

/// Everything exists, running and ready.
fn running() -> Observed {
    Observed {
        pvc_uid: Some("uid-1".into()),
        deployment: dep(1, 1),
        service: true,
        upstream: Some(UPSTREAM.into()),
        ingress: true,
        scaled_object_paused: Some(false),
        pods: 1,
        backup: None,
        on_demand_backup: false,
        restore: None,
        stale: Stale::default(),
    }
}

/// Everything exists, asleep.
fn sleeping() -> Observed {
    Observed { deployment: dep(0, 0), scaled_object_paused: Some(true), pods: 0, ..running() }
}

fn backup(outcome: JobOutcome) -> Option<BackupView> {
    let report = (outcome == JobOutcome::Succeeded).then(|| Ok(report()));
    Some(BackupView {
        id: "x-g2".into(),
        kind: BackupKind::Archive,
        file: Some("app-x-20250101-000000.zip".into()),
        outcome,
        report,
        error: None,
    })
}

fn report() -> ArchiveReport {
    ArchiveReport { size_bytes: 42, sha256: "ab".repeat(32) }
}

/// Done; a delete that wrote `file` also reports its verified archive.
fn done(status: SessionState, replicas: u32, file: Option<&str>) -> Step {
    let archive = file.map(|f| Archive {
        id: "x-g2".into(),
        kind: BackupKind::Archive,
        location: f.into(),
        size_bytes: 42,
        sha256: "ab".repeat(32),
    });
    Step::Done(Outcome { status, replicas, backup_file: file.map(str::to_owned), upstream: None, archive })
}

/// Running and ready, with the Service's address as the upstream.
fn done_running() -> Step {
    Step::Done(Outcome { upstream: Some(UPSTREAM.into()), ..outcome(SessionState::Running, 1) })
}

fn outcome(status: SessionState, replicas: u32) -> Outcome {
    Outcome { status, replicas, backup_file: None, upstream: None, archive: None }
}

const UPSTREAM: &str = "10.96.0.7:8080";

const FILE: Option<&str> = Some("app-x-20250101-000000.zip");

#[test]
fn running_table() {
    use Step::*;
    let cases: Vec<(&str, Observed, Vec<Step>)> = vec![
        (
            "nothing exists: create applies everything, then waits",
            Observed::default(),
            vec![
                ApplyPvc,
                ApplyDeployment { replicas: 1 },
                ApplyService,
                ApplyIngress,
                ApplyScaledObject { paused: false },
                Wait(super::Wait::Ready),
            ],
        ),
        (
            "crash after the PVC",
            Observed { pvc_uid: Some("u".into()), ..Observed::default() },
            vec![
                ApplyDeployment { replicas: 1 },
                ApplyService,
                ApplyIngress,
                ApplyScaledObject { paused: false },
                Wait(super::Wait::Ready),
            ],
        ),
        (
            "applied, not ready yet",
            Observed { deployment: dep(1, 0), pods: 1, ..running() },
            vec![Wait(super::Wait::Ready)],
        ),
        ("ready", running(), vec![done_running()]),
        (
            "wake: scale up first, then unpause KEDA",
            sleeping(),
            vec![ApplyDeployment { replicas: 1 }, UnpauseScaledObject, Wait(super::Wait::Ready)],
        ),
        (
            "crash after scaling up, before unpausing",
            Observed { deployment: dep(1, 1), scaled_object_paused: Some(true), ..running() },
            vec![UnpauseScaledObject, Wait(super::Wait::Ready)],
        ),
        (
            "an object deleted by hand is re-created",
            Observed { ingress: false, ..running() },
            vec![ApplyIngress, Wait(super::Wait::Ready)],
        ),
    ];
    for (name, observed, want) in cases {
        assert_eq!(plan(DesiredState::Running, &observed, Routing::Ingress), want, "{name}");
    }
}

#[test]
fn sleeping_table() {
    use Step::*;
    let cases: Vec<(&str, Observed, Vec<Step>)> = vec![
        (
            "sleep: pause KEDA before scaling to zero",
            running(),
            vec![ApplyScaledObject { paused: true }, ApplyDeployment { replicas: 0 }, Wait(super::Wait::PodsGone)],
        ),
        (
            "crash after pausing",
            Observed { scaled_object_paused: Some(true), ..running() },
            vec![ApplyDeployment { replicas: 0 }, Wait(super::Wait::PodsGone)],
        ),
        (
            "scaled to zero, pod still terminating",
            Observed { pods: 1, ..sleeping() },
            vec![Wait(super::Wait::PodsGone)],
        ),
        ("asleep", sleeping(), vec![done(SessionState::Sleeping, 0, None)]),
        (
            "sleep before anything existed creates a sleeping session",
            Observed::default(),
            vec![
                ApplyPvc,
                ApplyScaledObject { paused: true },
                ApplyDeployment { replicas: 0 },
                ApplyService,
                ApplyIngress,
                Wait(super::Wait::PodsGone),
            ],
        ),
    ];
    for (name, observed, want) in cases {
        assert_eq!(plan(DesiredState::Sleeping, &observed, Routing::Ingress), want, "{name}");
    }
}

#[test]
fn deleted_table_walks_every_crash_point() {
    use Step::*;
    let all_deletes =
        vec![DeleteScaledObject, DeleteIngress, DeleteService, DeleteDeployment, DeletePvc { uid: "uid-1".into() }];
    let mut tail = all_deletes.clone();
    tail.push(done(SessionState::Deleted, 0, FILE));
    let cases: Vec<(&str, Observed, Vec<Step>)> = vec![
        (
            "running: stop the workspace first",
            running(),
            vec![ApplyScaledObject { paused: true }, ApplyDeployment { replicas: 0 }, Wait(super::Wait::PodsGone)],
        ),
        ("scaled down, pod still there", Observed { pods: 1, ..sleeping() }, vec![Wait(super::Wait::PodsGone)]),
        ("asleep: back up", sleeping(), vec![CreateBackup, Wait(super::Wait::Backup)]),
        (
            "backup running",
            Observed { backup: backup(JobOutcome::Running), ..sleeping() },
            vec![Wait(super::Wait::Backup)],
        ),
        (
            "backup done: delete in order, PVC last",
            Observed { backup: backup(JobOutcome::Succeeded), ..sleeping() },
            tail,
        ),
        (
            "crash after deleting the ScaledObject",
            Observed { scaled_object_paused: None, backup: backup(JobOutcome::Succeeded), ..sleeping() },
            vec![
                DeleteIngress,
                DeleteService,
                DeleteDeployment,
                DeletePvc { uid: "uid-1".into() },
                done(SessionState::Deleted, 0, FILE),
            ],
        ),
        (
            "crash before deleting the PVC",
            Observed { pvc_uid: Some("uid-1".into()), backup: backup(JobOutcome::Succeeded), ..Observed::default() },
            vec![DeletePvc { uid: "uid-1".into() }, done(SessionState::Deleted, 0, FILE)],
        ),
        (
            "crash after deleting the PVC: done, file still known",
            Observed { backup: backup(JobOutcome::Succeeded), ..Observed::default() },
            vec![done(SessionState::Deleted, 0, FILE)],
        ),
        ("nothing ever existed", Observed::default(), vec![done(SessionState::Deleted, 0, None)]),
        (
            "no volume: nothing to back up, remove the rest",
            Observed { pvc_uid: None, ..running() },
            vec![
                DeleteScaledObject,
                DeleteIngress,
                DeleteService,
                DeleteDeployment,
                done(SessionState::Deleted, 0, None),
            ],
        ),
    ];
    for (name, observed, want) in cases {
        assert_eq!(plan(DesiredState::Deleted, &observed, Routing::Ingress), want, "{name}");
    }
}

#[test]
fn failed_backup_keeps_the_volume() {
    let observed = Observed { backup: backup(JobOutcome::Failed("BackoffLimitExceeded".into())), ..sleeping() };
    let steps = plan(DesiredState::Deleted, &observed, Routing::Ingress);
    assert_eq!(steps.len(), 1);
    match &steps[0] {
        Step::Fail { reason } => assert!(reason.contains("volume kept") && reason.contains("BackoffLimitExceeded")),
        other => panic!("{other:?}"),
    }
    assert!(!steps.iter().any(|s| matches!(s, Step::DeletePvc { .. })));
}

#[test]
fn an_on_demand_backup_waits_for_sleep_then_backs_up_and_stays_asleep() {
    use Step::*;
    let asked = |o: Observed| Observed { on_demand_backup: true, ..o };
    let archive = Archive {
        id: "x-g2".into(),
        kind: BackupKind::Archive,
        location: "app-x-20250101-000000.zip".into(),
        size_bytes: 42,
        sha256: "ab".repeat(32),
    };
    let cases: Vec<(&str, Observed, Vec<Step>)> = vec![
        (
            "a pod still holds the volume: no backup yet",
            asked(Observed { pods: 1, ..sleeping() }),
            vec![Wait(super::Wait::PodsGone)],
        ),
        ("asleep: the backup Job is created", asked(sleeping()), vec![CreateBackup, Wait(super::Wait::Backup)]),
        (
            "running Job: wait",
            asked(Observed { backup: backup(JobOutcome::Running), ..sleeping() }),
            vec![Wait(super::Wait::Backup)],
        ),
        (
            "verified: asleep, with the archive and no delete's backup file",
            asked(Observed { backup: backup(JobOutcome::Succeeded), ..sleeping() }),
            vec![Done(Outcome { archive: Some(archive), ..outcome(SessionState::Sleeping, 0) })],
        ),
        (
            "no request: asleep is done, whatever Job exists",
            Observed { backup: backup(JobOutcome::Running), ..sleeping() },
            vec![done(SessionState::Sleeping, 0, None)],
        ),
    ];
    for (name, observed, want) in cases {
        let steps = plan(DesiredState::Sleeping, &observed, Routing::Ingress);
        assert_eq!(steps, want, "{name}");
        assert!(!steps.iter().any(|s| matches!(s, DeletePvc { .. } | DeleteDeployment)), "{name}");
    }
    let failed = asked(Observed { backup: backup(JobOutcome::Failed("DeadlineExceeded".into())), ..sleeping() });
    match plan(DesiredState::Sleeping, &failed, Routing::Ingress).as_slice() {
        [Fail { reason }] => {
            assert!(reason.contains("stays asleep") && reason.contains("DeadlineExceeded"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_succeeded_backup_without_a_verified_report_keeps_the_volume() {
    for (report, want) in [
        (None, "no report was read"),
        (Some(Err("its pod left no termination message".to_owned())), "no termination message"),
    ] {
        let view = BackupView { report, ..backup(JobOutcome::Succeeded).expect("view") };
        let steps = plan(DesiredState::Deleted, &Observed { backup: Some(view), ..sleeping() }, Routing::Ingress);
        match steps.as_slice() {
            [Step::Fail { reason }] => assert!(reason.contains("volume kept") && reason.contains(want), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn every_plan_ends_in_wait_done_or_fail() {
    let bools = [false, true];
    let deps = [None, dep(0, 0), dep(1, 0), dep(1, 1)];
    let sos = [None, Some(false), Some(true)];
    let unverified = backup(JobOutcome::Succeeded).map(|b| BackupView { report: Some(Err("bad".into())), ..b });
    let backups = [
        None,
        backup(JobOutcome::Running),
        backup(JobOutcome::Succeeded),
        unverified,
        backup(JobOutcome::Failed("x".into())),
    ];
    let restores = [
        None,
        restore(None),
        restore(Some(JobOutcome::Running)),
        restore(Some(JobOutcome::Succeeded)),
        restore(Some(JobOutcome::Failed("x".into()))),
        from_snapshot(None),
        from_snapshot(Some(false)),
        from_snapshot(Some(true)),
    ];
    for (desired, r) in DesiredState::ALL.iter().flat_map(|d| restores.iter().map(move |r| (d, r))) {
        for pvc in bools {
            for d in &deps {
                for svc in bools {
                    for so in sos {
                        for pods in [0, 1] {
                            for b in &backups {
                                let o = Observed {
                                    pvc_uid: pvc.then(|| "u".to_owned()),
                                    deployment: d.clone(),
                                    service: svc,
                                    upstream: svc.then(|| UPSTREAM.to_owned()),
                                    ingress: svc,
                                    scaled_object_paused: so,
                                    pods,
                                    backup: b.clone(),
                                    on_demand_backup: *desired == DesiredState::Sleeping && b.is_some(),
                                    restore: r.clone(),
                                    stale: Stale::default(),
                                };
                                for routing in [Routing::Gateway, Routing::Ingress] {
                                    let steps = plan(*desired, &o, routing);
                                    let last = steps.last().expect("non-empty plan");
                                    assert!(!last.is_action(), "{desired:?} {o:?} -> {steps:?}");
                                    assert!(steps[..steps.len() - 1].iter().all(Step::is_action), "{steps:?}");
                                    if *desired == DesiredState::Deleted && pvc {
                                        let deletes_pvc = steps.iter().any(|s| matches!(s, Step::DeletePvc { .. }));
                                        let backed_up = b.as_ref().is_some_and(|b| {
                                            b.outcome == JobOutcome::Succeeded && matches!(b.report, Some(Ok(_)))
                                        });
                                        assert!(!deletes_pvc || backed_up, "PVC deleted without backup: {o:?}");
                                    }
                                    let restored = r.as_ref().is_none_or(|r| match &r.progress {
                                        RestoreProgress::Job(j) => *j == Some(JobOutcome::Succeeded),
                                        RestoreProgress::Snapshot(ready) => pvc || *ready == Some(true),
                                    });
                                    if d.is_none() && !restored && *desired != DesiredState::Deleted {
                                        let deploys = steps.iter().any(|s| matches!(s, Step::ApplyDeployment { .. }));
                                        assert!(!deploys, "a workspace before its restore: {o:?} -> {steps:?}");
                                    }
                                    let unready_snapshot = r.as_ref().is_some_and(|r| {
                                        matches!(r.progress, RestoreProgress::Snapshot(ready) if ready != Some(true))
                                    });
                                    if !pvc && unready_snapshot && d.is_none() {
                                        let applies = steps.contains(&Step::ApplyPvc);
                                        assert!(!applies, "a volume from an unready snapshot: {o:?} -> {steps:?}");
                                    }
                                    if *desired == DesiredState::Deleted {
                                        assert!(
                                            !steps.iter().any(|s| creates_workspace_object(s, &o)),
                                            "{o:?} -> {steps:?}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn restore(job: Option<JobOutcome>) -> Option<RestoreView> {
    Some(RestoreView { backup_id: "old-g3".into(), progress: RestoreProgress::Job(job) })
}

fn from_snapshot(ready: Option<bool>) -> Option<RestoreView> {
    Some(RestoreView { backup_id: "old-g3".into(), progress: RestoreProgress::Snapshot(ready) })
}

#[test]
fn a_session_restored_from_a_snapshot_gets_its_volume_once_the_snapshot_is_ready() {
    for desired in [DesiredState::Running, DesiredState::Sleeping] {
        let waiting = Observed { restore: from_snapshot(Some(false)), ..Observed::default() };
        assert_eq!(plan(desired, &waiting, Routing::Gateway), [Step::Wait(Wait::Restore)], "{desired:?}");
        let gone = Observed { restore: from_snapshot(None), ..Observed::default() };
        assert_eq!(
            plan(desired, &gone, Routing::Gateway),
            [Step::Fail { reason: "restore from backup old-g3 failed: its VolumeSnapshot no longer exists".into() }]
        );
        // Ready: the ordinary plan, whose PVC names the snapshot; no Job.
        let ready = Observed { restore: from_snapshot(Some(true)), ..Observed::default() };
        let steps = plan(desired, &ready, Routing::Gateway);
        assert_eq!(steps, plan(desired, &Observed::default(), Routing::Gateway));
        assert_eq!(steps.first(), Some(&Step::ApplyPvc));
        assert!(!steps.contains(&Step::CreateRestore));
        // Once the volume exists the snapshot is not needed any more.
        let made = Observed { pvc_uid: Some("u".into()), restore: from_snapshot(None), ..Observed::default() };
        let plain = Observed { pvc_uid: Some("u".into()), ..Observed::default() };
        assert_eq!(plan(desired, &made, Routing::Gateway), plan(desired, &plain, Routing::Gateway));
    }
}

#[test]
fn a_ready_snapshot_is_the_backup_of_a_delete() {
    let snap = BackupView {
        id: "x-g2".into(),
        kind: BackupKind::Snapshot,
        file: Some("ws-x-snap-g2".into()),
        outcome: JobOutcome::Succeeded,
        report: Some(Ok(ArchiveReport { size_bytes: 5 << 30, sha256: String::new() })),
        error: None,
    };
    let o = Observed { backup: Some(snap.clone()), ..sleeping() };
    let steps = plan(DesiredState::Deleted, &o, Routing::Gateway);
    let Some(Step::Done(out)) = steps.last() else { panic!("{steps:?}") };
    assert!(steps.contains(&Step::DeletePvc { uid: "uid-1".into() }), "{steps:?}");
    assert_eq!(
        out.archive,
        Some(Archive {
            id: "x-g2".into(),
            kind: BackupKind::Snapshot,
            location: "ws-x-snap-g2".into(),
            size_bytes: 5 << 30,
            sha256: String::new()
        })
    );
    assert_eq!(out.backup_file.as_deref(), Some("ws-x-snap-g2"));
    // Not ready yet: nothing is deleted.
    let waiting = BackupView { outcome: JobOutcome::Running, report: None, ..snap };
    let o = Observed { backup: Some(waiting), ..o };
    assert_eq!(plan(DesiredState::Deleted, &o, Routing::Gateway), [Step::Wait(Wait::Backup)]);
}

#[test]
fn a_restored_session_gets_its_files_before_its_workspace() {
    for desired in [DesiredState::Running, DesiredState::Sleeping] {
        let fresh = Observed { restore: restore(None), ..Observed::default() };
        assert_eq!(
            plan(desired, &fresh, Routing::Gateway),
            [Step::ApplyPvc, Step::CreateRestore, Step::Wait(Wait::Restore)],
            "{desired:?}"
        );
        let with_pvc = Observed { pvc_uid: Some("u".into()), ..fresh.clone() };
        assert_eq!(plan(desired, &with_pvc, Routing::Gateway), [Step::CreateRestore, Step::Wait(Wait::Restore)]);
        let running = Observed { restore: restore(Some(JobOutcome::Running)), ..with_pvc.clone() };
        assert_eq!(plan(desired, &running, Routing::Gateway), [Step::Wait(Wait::Restore)]);
        let failed = Observed {
            restore: restore(Some(JobOutcome::Failed("archive a.zip is 9 bytes".into()))),
            ..with_pvc.clone()
        };
        assert_eq!(
            plan(desired, &failed, Routing::Gateway),
            [Step::Fail { reason: "restore from backup old-g3 failed: archive a.zip is 9 bytes".into() }]
        );
        // Restored: the ordinary plan, which creates the workspace.
        let done = Observed { restore: restore(Some(JobOutcome::Succeeded)), ..with_pvc.clone() };
        let no_restore = Observed { restore: None, ..with_pvc.clone() };
        assert_eq!(plan(desired, &done, Routing::Gateway), plan(desired, &no_restore, Routing::Gateway));
        // Once the Deployment exists the restore is done, even when its Job is gone (TTL).
        let later = Observed { deployment: dep(1, 1), restore: restore(None), ..with_pvc };
        assert!(!plan(desired, &later, Routing::Gateway).contains(&Step::CreateRestore));
    }
    // A delete never restores.
    let fresh = Observed { pvc_uid: Some("u".into()), restore: restore(None), ..Observed::default() };
    assert!(!plan(DesiredState::Deleted, &fresh, Routing::Gateway).contains(&Step::CreateRestore));
}

/// Whether `step` would have to create a workspace object that `o` lacks.
fn creates_workspace_object(step: &Step, o: &Observed) -> bool {
    match step {
        Step::ApplyPvc => o.pvc_uid.is_none(),
        Step::ApplyService => !o.service,
        Step::ApplyIngress => !o.ingress,
        Step::ApplyDeployment { .. } => o.deployment.is_none(),
        Step::ApplyScaledObject { .. } => o.scaled_object_paused.is_none(),
        _ => false,
    }
}

#[test]
fn objects_written_under_an_older_lease_are_written_again_with_ours() {
    let all = Stale { pvc: true, deployment: true, service: true, ingress: true, scaled_object: true };
    let steps = plan(DesiredState::Running, &Observed { stale: all, ..running() }, Routing::Ingress);
    assert_eq!(
        steps,
        [
            Step::ApplyPvc,
            Step::ApplyDeployment { replicas: 1 },
            Step::ApplyService,
            Step::ApplyIngress,
            Step::ApplyScaledObject { paused: false },
            Step::Wait(Wait::Ready),
        ]
    );
    let steps = plan(
        DesiredState::Sleeping,
        &Observed { stale: Stale { service: true, ..Stale::default() }, ..sleeping() },
        Routing::Ingress,
    );
    assert_eq!(steps, [Step::ApplyService, Step::Wait(Wait::PodsGone)]);
    // A delete stamps nothing it is about to remove.
    let steps = plan(DesiredState::Deleted, &Observed { stale: all, pods: 0, ..sleeping() }, Routing::Ingress);
    assert!(!steps.iter().any(|s| matches!(s, Step::ApplyPvc | Step::ApplyService | Step::ApplyIngress)), "{steps:?}");
}

#[test]
fn gateway_routing_applies_no_ingress_and_removes_a_leftover() {
    use Step::*;
    let gateway = |desired, o: &Observed| plan(desired, o, Routing::Gateway);
    let no_ingress = Observed { ingress: false, ..running() };
    let cases: Vec<(&str, DesiredState, Observed, Vec<Step>)> = vec![
        (
            "create: everything but an Ingress",
            DesiredState::Running,
            Observed::default(),
            vec![
                ApplyPvc,
                ApplyDeployment { replicas: 1 },
                ApplyService,
                ApplyScaledObject { paused: false },
                Wait(super::Wait::Ready),
            ],
        ),
        ("ready: done with the Service's address", DesiredState::Running, no_ingress.clone(), vec![done_running()]),
        (
            "ready, the Service has no cluster IP yet: done, no upstream",
            DesiredState::Running,
            Observed { upstream: None, ..no_ingress.clone() },
            vec![Step::Done(outcome(SessionState::Running, 1))],
        ),
        (
            "switched from ingress mode: the leftover Ingress goes",
            DesiredState::Running,
            running(),
            vec![DeleteIngress, Wait(super::Wait::Ready)],
        ),
        (
            "sleeping: no Ingress, no upstream",
            DesiredState::Sleeping,
            Observed { ingress: false, ..sleeping() },
            vec![Step::Done(outcome(SessionState::Sleeping, 0))],
        ),
        (
            "sleeping, switched from ingress mode",
            DesiredState::Sleeping,
            sleeping(),
            vec![DeleteIngress, Wait(super::Wait::PodsGone)],
        ),
        (
            "delete removes a leftover Ingress like any other object",
            DesiredState::Deleted,
            Observed { pvc_uid: None, ..running() },
            vec![
                DeleteScaledObject,
                DeleteIngress,
                DeleteService,
                DeleteDeployment,
                done(SessionState::Deleted, 0, None),
            ],
        ),
    ];
    for (name, desired, observed, want) in cases {
        assert_eq!(gateway(desired, &observed), want, "{name}");
    }
}
