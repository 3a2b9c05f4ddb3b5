//! Micro-benchmarks of the contract's hot paths: the work the api does per
//! enqueued command (parse the session id, decide, encode the job, build the
//! script invocation, parse the reply) and the work the worker does per
//! delivered entry (decode the job, encode the status event).
//!
//! Run with `cargo bench -p proto-types --bench codec`; `make bench` runs it
//! with short timings and copies the estimates into the report.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use proto_types::machine::{SessionView, decide};
use proto_types::scripts::enqueue::{Enqueue, EnqueueReply};
use proto_types::{Command, DesiredState, Event, Job, JobId, JobState, Origin, SessionId, SessionState};

/// A job shaped like the api's: idempotency key and traceparent set.
fn sample_job() -> Job {
    let mut job = Job::test("0fa6debc", Command::Sleep, 7);
    job.idempotency_key = Some("3f1c8a2e-7d4b-4a51-9a0e-2b6f0c9d1e77".into());
    job.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    job
}

fn job_codec(c: &mut Criterion) {
    let job = sample_job();
    let bytes = job.encode().expect("a valid job encodes");
    let mut group = c.benchmark_group("job");
    group.bench_function("encode", |b| b.iter(|| black_box(&job).encode()));
    group.bench_function("decode", |b| b.iter(|| Job::decode(black_box(&bytes))));
    group.finish();
}

fn event_codec(c: &mut Criterion) {
    let event = Event {
        job_id: JobId::from_random([9; 16]),
        session_id: SessionId::parse("0fa6debc").expect("valid id"),
        command: Command::Wake,
        job_state: JobState::Succeeded,
        session_state: SessionState::Running,
        at_ms: 1_700_000_000_000,
        error: None,
        origin: Origin::Api,
    };
    let bytes = event.encode().expect("a valid event encodes");
    let mut group = c.benchmark_group("event");
    group.bench_function("encode", |b| b.iter(|| black_box(&event).encode()));
    group.bench_function("decode", |b| b.iter(|| Event::decode(black_box(&bytes))));
    group.finish();
}

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("id");
    group.bench_function("session_parse", |b| b.iter(|| SessionId::parse(black_box("0fa6debc"))));
    group.bench_function("job_parse", |b| b.iter(|| JobId::parse(black_box("0123456789abcdef0123456789abcdef"))));
    group.finish();
}

/// Everything pure the api does for one command, end to end.
fn enqueue_path(c: &mut Criterion) {
    let view = Some(SessionView { status: SessionState::Running, desired: DesiredState::Running });
    let reply = vec!["ok".to_owned(), "1700000000000-0".to_owned()];
    let mut group = c.benchmark_group("enqueue");
    group.bench_function("decide", |b| b.iter(|| decide(black_box(view), black_box(Command::Sleep))));
    group.bench_function("invocation", |b| {
        let job = sample_job();
        let payload = job.encode().expect("a valid job encodes");
        b.iter(|| {
            Enqueue {
                job: &job,
                payload: &payload,
                expected_generation: 6,
                desired: DesiredState::Sleeping,
                status: SessionState::Running,
                user_id: "user@example.com",
                max_sessions_per_user: 3,
                workspace_url: "https://vs-code-0fa6debc.preview.example.com",
                idempotency: Some(("scope", "key", "fingerprint")),
                now_ms: 1_700_000_000_000,
                idle_timeout_secs: None,
                restore: None,
            }
            .invocation()
        })
    });
    group.bench_function("full_pure_path", |b| {
        b.iter(|| {
            let sid = SessionId::parse(black_box("0fa6debc")).expect("valid id");
            let decision = decide(black_box(view), Command::Sleep).expect("accepted");
            let mut job = sample_job();
            job.session_id = sid;
            let payload = job.encode().expect("a valid job encodes");
            let inv = Enqueue {
                job: &job,
                payload: &payload,
                expected_generation: 6,
                desired: decision.desired,
                status: decision.status,
                user_id: "user@example.com",
                max_sessions_per_user: 3,
                workspace_url: "https://vs-code-0fa6debc.preview.example.com",
                idempotency: None,
                now_ms: 1_700_000_000_000,
                idle_timeout_secs: None,
                restore: None,
            }
            .invocation();
            (inv, EnqueueReply::parse(black_box(&reply)))
        })
    });
    group.finish();
}

criterion_group!(benches, job_codec, event_codec, ids, enqueue_path);
criterion_main!(benches);
