//! Micro-benchmarks of the worker's pure planning code: [`plan`] for the
//! situations a job meets (fresh create, sleep of a running session, the last
//! pass of a delete) and the object builders the apply steps call.
//!
//! Run with `cargo bench -p worker --bench plan`; `make bench` runs it with
//! short timings and copies the estimates into the report. Plans use
//! `ingress` routing, so the figures stay comparable with earlier runs.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use proto_types::{DesiredState, SessionId};
use worker::k8s::backup::{ArchiveReport, JobOutcome};
use worker::k8s::k8s_config::{K8sConfig, Routing};
use worker::k8s::plan::{BackupView, DeploymentView, Observed, plan};
use worker::k8s::{keda, objects};

fn running() -> Observed {
    Observed {
        pvc_uid: Some("0b7e3c4e-2a8b-4c55-9d1e-6f3a2b1c0d9e".into()),
        deployment: Some(DeploymentView { replicas: 1, ready: 1 }),
        service: true,
        upstream: Some("10.96.0.7:8080".into()),
        ingress: true,
        scaled_object_paused: Some(false),
        pods: 1,
        backup: None,
        on_demand_backup: false,
        restore: None,
        stale: Default::default(),
    }
}

fn planning(c: &mut Criterion) {
    let fresh = Observed::default();
    let up = running();
    let backed_up = Observed {
        deployment: Some(DeploymentView { replicas: 0, ready: 0 }),
        scaled_object_paused: Some(true),
        pods: 0,
        backup: Some(BackupView {
            id: "0fa6debc-g2".into(),
            kind: proto_types::BackupKind::Archive,
            error: None,
            file: Some("app-0fa6debc-20251120-130829.zip".into()),
            outcome: JobOutcome::Succeeded,
            report: Some(Ok(ArchiveReport { size_bytes: 42, sha256: "ab".repeat(32) })),
        }),
        ..running()
    };
    let mut group = c.benchmark_group("plan");
    group.bench_function("create_fresh", |b| {
        b.iter(|| plan(DesiredState::Running, black_box(&fresh), Routing::Ingress))
    });
    group.bench_function("running_converged", |b| {
        b.iter(|| plan(DesiredState::Running, black_box(&up), Routing::Ingress))
    });
    group
        .bench_function("sleep_running", |b| b.iter(|| plan(DesiredState::Sleeping, black_box(&up), Routing::Ingress)));
    group.bench_function("delete_after_backup", |b| {
        b.iter(|| plan(DesiredState::Deleted, black_box(&backed_up), Routing::Ingress))
    });
    group.finish();
}

fn objects(c: &mut Criterion) {
    let config = K8sConfig::default();
    let id = SessionId::parse("0fa6debc").expect("valid id");
    let mut group = c.benchmark_group("objects");
    group.bench_function("deployment", |b| b.iter(|| objects::deployment(black_box(&config), black_box(&id), 1)));
    group.bench_function("pvc", |b| b.iter(|| objects::pvc(black_box(&config), black_box(&id))));
    group.bench_function("ingress", |b| b.iter(|| objects::ingress(black_box(&config), black_box(&id), None)));
    group.bench_function("scaled_object", |b| b.iter(|| keda::scaled_object(black_box(&config), black_box(&id), true)));
    group.bench_function("all_for_create", |b| {
        b.iter(|| {
            let cfg = black_box(&config);
            (
                objects::pvc(cfg, &id),
                objects::deployment(cfg, &id, 1),
                objects::service(cfg, &id),
                objects::ingress(cfg, &id, None),
                keda::scaled_object(cfg, &id, false),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, planning, objects);
criterion_main!(benches);
