//! Table tests of [`next`]: one row per decision of a job's life, built
//! from a [`Known`] fixture that walks the happy path step by step.

use proto_types::scripts::finish::FinishReply;
use proto_types::scripts::start::{SessionSnapshot, StartReply};
use proto_types::{DesiredState, JobState, SessionState};

use super::*;
use crate::executor::{Archive, ExecError, FailedBackup, Outcome};
use crate::queue::{QueueError, SessionView};

const MAX: u64 = 5;

fn snapshot(generation: u64, desired: Option<DesiredState>, status: Option<SessionState>) -> SessionSnapshot {
    SessionSnapshot { generation, desired, status, workspace_url: None, user_id: Some("u".into()), restore: None }
}

/// Fixture: a decoded job of generation 3 on its first delivery.
fn fresh() -> Known {
    Known::new(false, Some(3), Deliveries::Count(1))
}

trait Fixture {
    fn started(self, s: SessionSnapshot) -> Self;
    fn leased(self) -> Self;
    fn viewed(self, generation: u64, desired: Option<DesiredState>, status: Option<SessionState>) -> Self;
    fn converged(self, r: Result<Outcome, ExecError>) -> Self;
    fn finish_reply(self, r: FinishReply) -> Self;
    fn failed(self, op: QueueOp, retryable: bool) -> Self;
}

impl Fixture for Known {
    fn started(mut self, s: SessionSnapshot) -> Self {
        self.start = Some(StartReply::Started { attempts: 1, session: s });
        self
    }
    fn leased(mut self) -> Self {
        self.lease = LeaseState::Held { token: 7 };
        self
    }
    fn viewed(mut self, generation: u64, desired: Option<DesiredState>, status: Option<SessionState>) -> Self {
        self.view = Some(SessionView { generation, desired, status });
        self
    }
    fn converged(mut self, r: Result<Outcome, ExecError>) -> Self {
        self.converged = Some(r);
        self
    }
    fn finish_reply(mut self, r: FinishReply) -> Self {
        self.finished.push(r);
        self
    }
    fn failed(mut self, op: QueueOp, retryable: bool) -> Self {
        self.failure = Some(Failure { op, retryable, message: "boom".into() });
        self
    }
}

/// A current job (generation 3) whose session is running, under the lease.
fn converging() -> Known {
    use DesiredState::Sleeping;
    fresh().started(snapshot(3, Some(Sleeping), Some(SessionState::Running))).leased().viewed(
        3,
        Some(Sleeping),
        Some(SessionState::Running),
    )
}

fn sleeping() -> Outcome {
    Outcome { status: SessionState::Sleeping, replicas: 0, backup_file: None, upstream: None, archive: None }
}

fn written(state: JobState, status: SessionState, error: Option<&str>) -> Ending {
    Ending {
        state,
        error: error.map(str::to_owned),
        event_status: status,
        session: Some(SessionWrite {
            fence: 7,
            status,
            replicas: 0,
            backup_file: None,
            upstream: None,
            archive: None,
            failed_backup: None,
        }),
    }
}

fn alone(state: JobState, error: Option<&str>, status: SessionState) -> Ending {
    Ending { state, error: error.map(str::to_owned), event_status: status, session: None }
}

fn dead(reason: &str) -> Step {
    Step::DeadLetter { reason: reason.into() }
}

#[test]
fn triage_by_entry_deliveries_and_decoding() {
    let undecodable = |n| Known::new(false, None, Deliveries::Count(n));
    let delivered = |n| Known::new(false, Some(3), Deliveries::Count(n));
    let cases: Vec<(&str, Known, Step)> = vec![
        ("entry data gone", Known::new(true, None, Deliveries::Unknown), Step::Ack(AckReason::EntryGone)),
        ("count unknown", Known::new(false, Some(3), Deliveries::Unknown), Step::LookupDeliveries),
        ("acked meanwhile", Known::new(false, Some(3), Deliveries::NotPending), Step::Done(Done::NotPending)),
        ("first delivery", delivered(1), Step::Start),
        ("at the limit", delivered(5), Step::Start),
        ("over the limit", delivered(6), dead("delivered 6 times (limit 5)")),
        ("undecodable", undecodable(1), Step::Done(Done::LeftPending { reason: "undecodable payload".into() })),
        ("undecodable at the limit", undecodable(5), dead("undecodable payload after 5 deliveries")),
        ("undecodable over the limit", undecodable(9), dead("delivered 9 times (limit 5)")),
    ];
    for (name, known, want) in cases {
        assert_eq!(next(&known, MAX), want, "{name}");
    }
    let mut k = delivered(6);
    k.dead_lettered = true;
    assert_eq!(next(&k, MAX), Step::Done(Done::DeadLettered { reason: "delivered 6 times (limit 5)".into() }));
    let mut k = Known::new(true, None, Deliveries::Unknown);
    k.acked = true;
    assert_eq!(next(&k, MAX), Step::Done(Done::Acked));
}

#[test]
fn start_reply_terminal_is_only_acknowledged() {
    let mut k = fresh();
    k.start = Some(StartReply::Terminal { state: JobState::Succeeded });
    assert_eq!(next(&k, MAX), Step::Ack(AckReason::AlreadyTerminal(JobState::Succeeded)));
    k.acked = true;
    assert_eq!(next(&k, MAX), Step::Done(Done::Acked));
}

#[test]
fn superseded_and_orphaned_end_alone_with_the_sessions_real_status() {
    use DesiredState::*;
    use SessionState as S;
    let started = |s| fresh().started(s);
    let cases: Vec<(&str, Known, Step)> = vec![
        // Found at start (no lease taken).
        (
            "stale at start",
            started(snapshot(4, Some(Running), Some(S::Waking))),
            Step::Finish(alone(JobState::Superseded, None, S::Waking)),
        ),
        (
            "no session at start",
            started(snapshot(0, None, None)),
            Step::Finish(alone(JobState::Failed, Some(ORPHANED), S::Failed)),
        ),
        (
            "desired without generation",
            started(snapshot(0, Some(Running), Some(S::Creating))),
            Step::Finish(alone(JobState::Failed, Some(ORPHANED), S::Creating)),
        ),
        ("current at start", started(snapshot(3, Some(Running), Some(S::Creating))), Step::AcquireLease),
        ("newer than the record", started(snapshot(2, Some(Running), Some(S::Creating))), Step::AcquireLease),
        // Found under the lease: same ending, the status read under the lease.
        (
            "stale under the lease",
            started(snapshot(3, Some(Running), Some(S::Creating))).leased().viewed(
                4,
                Some(Sleeping),
                Some(S::Sleeping),
            ),
            Step::Finish(alone(JobState::Superseded, None, S::Sleeping)),
        ),
        (
            "deleted under the lease",
            started(snapshot(3, Some(Running), Some(S::Creating))).leased().viewed(0, None, None),
            Step::Finish(alone(JobState::Failed, Some(ORPHANED), S::Creating)),
        ),
    ];
    for (name, known, want) in cases {
        assert_eq!(next(&known, MAX), want, "{name}");
    }
}

#[test]
fn regression_superseded_under_the_lease_reported_running() {
    // The event of a job superseded while it waited for the lease said
    // `running` whatever the session was; it now says what the session is.
    let k = fresh().started(snapshot(3, Some(DesiredState::Running), Some(SessionState::Running))).leased().viewed(
        5,
        Some(DesiredState::Deleted),
        Some(SessionState::Deleting),
    );
    assert_eq!(next(&k, MAX), Step::Finish(alone(JobState::Superseded, None, SessionState::Deleting)));
}

#[test]
fn lease_then_read_then_converge_to_the_latest_desire() {
    let started = fresh().started(snapshot(3, Some(DesiredState::Running), Some(SessionState::Creating)));
    let mut shut = started.clone();
    shut.lease = LeaseState::ShutdownWhileWaiting;
    assert_eq!(next(&shut, MAX), Step::Done(Done::ShutdownWhileWaiting));
    assert_eq!(next(&started.clone().leased(), MAX), Step::ReadSession);
    // Desire changed to sleeping at the same generation: converge to the latest.
    let viewed = started.leased().viewed(3, Some(DesiredState::Sleeping), Some(SessionState::Running));
    assert_eq!(next(&viewed, MAX), Step::Converge { desired: DesiredState::Sleeping, generation: 3 });
}

#[test]
fn the_executor_result_decides_the_one_finish() {
    let archive = Archive {
        id: "abc-g2".into(),
        kind: proto_types::BackupKind::Archive,
        location: "b.zip".into(),
        size_bytes: 7,
        sha256: "ff".into(),
    };
    let deleted = Outcome {
        status: SessionState::Deleted,
        replicas: 0,
        backup_file: Some("b.zip".into()),
        upstream: None,
        archive: Some(archive.clone()),
    };
    let cases: Vec<(&str, Result<Outcome, ExecError>, Step)> = vec![
        ("converged", Ok(sleeping()), Step::Finish(written(JobState::Succeeded, SessionState::Sleeping, None))),
        (
            "converged running: the Service's address goes to the session for the gateway",
            Ok(Outcome {
                status: SessionState::Running,
                replicas: 1,
                backup_file: None,
                upstream: Some("10.96.0.7:8080".into()),
                archive: None,
            }),
            Step::Finish(Ending {
                state: JobState::Succeeded,
                error: None,
                event_status: SessionState::Running,
                session: Some(SessionWrite {
                    fence: 7,
                    status: SessionState::Running,
                    replicas: 1,
                    backup_file: None,
                    upstream: Some("10.96.0.7:8080".into()),
                    archive: None,
                    failed_backup: None,
                }),
            }),
        ),
        (
            "converged with a backup",
            Ok(deleted),
            Step::Finish(Ending {
                state: JobState::Succeeded,
                error: None,
                event_status: SessionState::Deleted,
                session: Some(SessionWrite {
                    fence: 7,
                    status: SessionState::Deleted,
                    replicas: 0,
                    backup_file: Some("b.zip".into()),
                    upstream: None,
                    archive: Some(Box::new(archive)),
                    failed_backup: None,
                }),
            }),
        ),
        (
            "permanent",
            Err(ExecError::permanent("forbidden", SessionState::Failed)),
            Step::Finish(written(JobState::Failed, SessionState::Failed, Some("forbidden"))),
        ),
        (
            "permanent over the delete's backup: recorded as a failed backup",
            Err(ExecError::permanent("backup failed", SessionState::Failed).with_failed_backup(FailedBackup {
                id: "abc-g2".into(),
                kind: proto_types::BackupKind::Archive,
                location: "b.zip".into(),
            })),
            Step::Finish(Ending {
                session: Some(SessionWrite {
                    failed_backup: Some(Box::new(FailedBackup {
                        id: "abc-g2".into(),
                        kind: proto_types::BackupKind::Archive,
                        location: "b.zip".into(),
                    })),
                    ..written(JobState::Failed, SessionState::Failed, Some("backup failed")).session.expect("write")
                }),
                ..written(JobState::Failed, SessionState::Failed, Some("backup failed"))
            }),
        ),
        (
            "retries exhausted",
            Err(ExecError::retryable("503")),
            Step::Done(Done::LeftPending { reason: "retries exhausted: 503".into() }),
        ),
        (
            "fenced: abandoned without a finish",
            Err(ExecError::Fenced(crate::fenced::Fenced::LeaseLost)),
            Step::Done(Done::Fenced { reason: "the session lease was lost to another holder".into() }),
        ),
    ];
    for (name, result, want) in cases {
        assert_eq!(next(&converging().converged(result), MAX), want, "{name}");
    }
}

#[test]
fn finish_replies() {
    let done = converging().converged(Ok(sleeping()));
    let finished = |state, error: Option<&str>, status| {
        Step::Done(Done::Finished { state, error: error.map(str::to_owned), status })
    };
    let cases: Vec<(&str, Vec<FinishReply>, Step)> = vec![
        ("finished", vec![FinishReply::Finished], finished(JobState::Succeeded, None, SessionState::Sleeping)),
        (
            "already terminal",
            vec![FinishReply::AlreadyTerminal { state: JobState::Dead }],
            Step::Done(Done::AlreadyTerminal { state: JobState::Dead }),
        ),
        (
            "fenced: finish again, superseded, without the write",
            vec![FinishReply::Fenced { session_fence: 9 }],
            Step::Finish(alone(JobState::Superseded, Some(FENCED), SessionState::Sleeping)),
        ),
        (
            "fenced, then finished",
            vec![FinishReply::Fenced { session_fence: 9 }, FinishReply::Finished],
            finished(JobState::Superseded, Some(FENCED), SessionState::Sleeping),
        ),
        (
            "fenced twice",
            vec![FinishReply::Fenced { session_fence: 9 }, FinishReply::Fenced { session_fence: 9 }],
            Step::Done(Done::FencedWithoutWrite { session_fence: 9 }),
        ),
    ];
    for (name, replies, want) in cases {
        let mut k = done.clone();
        k.finished = replies;
        assert_eq!(next(&k, MAX), want, "{name}");
    }
    // A finish without a session write cannot be fenced; if it is, stop.
    let stale = fresh()
        .started(snapshot(4, Some(DesiredState::Running), Some(SessionState::Running)))
        .finish_reply(FinishReply::Fenced { session_fence: 2 });
    assert_eq!(next(&stale, MAX), Step::Done(Done::FencedWithoutWrite { session_fence: 2 }));
}

#[test]
fn queue_failures_retryable_leave_pending_permanent_dead_letter() {
    let reason = |op: &str| format!("permanent queue error in {op}: boom");
    let left = Step::Done(Done::LeftPending { reason: "boom".into() });
    let cases: Vec<(&str, Known, Step)> = vec![
        ("retryable start", fresh().failed(QueueOp::Start, true), left.clone()),
        ("retryable finish", converging().failed(QueueOp::Finish, true), left.clone()),
        ("permanent start", fresh().failed(QueueOp::Start, false), dead(&reason("start"))),
        ("permanent lease", fresh().failed(QueueOp::Lease, false), dead(&reason("lease"))),
        ("permanent finish", converging().failed(QueueOp::Finish, false), dead(&reason("finish"))),
        ("permanent dead-letter", fresh().failed(QueueOp::DeadLetter, false), Step::Ack(AckReason::DeadLetterFailed)),
        ("permanent ack", fresh().failed(QueueOp::Ack, false), left),
    ];
    for (name, known, want) in cases {
        assert_eq!(next(&known, MAX), want, "{name}");
    }
    let mut k = fresh().failed(QueueOp::Start, false);
    k.dead_lettered = true;
    assert_eq!(next(&k, MAX), Step::Done(Done::DeadLettered { reason: reason("start") }));
    let mut k = fresh().failed(QueueOp::DeadLetter, false);
    k.acked = true;
    assert_eq!(next(&k, MAX), Step::Done(Done::Acked));
}

#[test]
fn failures_keep_the_queue_errors_kind() {
    let permanent = QueueError::Shape { op: "start", detail: "nil".into() };
    let f = Failure::new(QueueOp::Start, &permanent);
    assert!(!f.retryable);
    assert!(f.message.contains("unexpected reply to start"), "{}", f.message);
    let retry = QueueError::NoGroup { op: "XACK" };
    assert!(Failure::new(QueueOp::Ack, &retry).retryable);
}

/// Every path ends: following `next` with the interpreter's usual answers
/// reaches `Done` within a few steps, whatever the starting facts.
#[test]
fn every_path_terminates() {
    let starts = [
        fresh(),
        Known::new(true, None, Deliveries::Unknown),
        Known::new(false, None, Deliveries::Count(9)),
        converging(),
    ];
    for mut k in starts {
        for _ in 0..16 {
            match next(&k, MAX) {
                Step::Done(_) => break,
                Step::LookupDeliveries => k.deliveries = Deliveries::Count(2),
                Step::Start => {
                    k.start = Some(StartReply::Started {
                        attempts: 1,
                        session: snapshot(3, Some(DesiredState::Running), Some(SessionState::Creating)),
                    })
                }
                Step::AcquireLease => k.lease = LeaseState::Held { token: 1 },
                Step::ReadSession => k.view = Some(SessionView::of(&snapshot(3, Some(DesiredState::Running), None))),
                Step::Converge { .. } => k.converged = Some(Ok(sleeping())),
                Step::Finish(_) => k.finished.push(FinishReply::Fenced { session_fence: 9 }),
                Step::DeadLetter { .. } => k.dead_lettered = true,
                Step::Ack(_) => k.acked = true,
            }
        }
        assert!(matches!(next(&k, MAX), Step::Done(_)), "{k:?}");
    }
}
