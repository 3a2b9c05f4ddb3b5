//! Docs drift: every flag and environment variable of the worker binary is
//! documented in exactly one row of `worker/README.md`'s `worker` table (or
//! of the shared `telemetry` table), and the `telemetry` table documents
//! exactly what `sm_telemetry` and the OpenTelemetry SDK read. Adding a
//! flag without its row, or removing one and leaving the row, fails here.

use std::cell::RefCell;

use clap::CommandFactory as _;
use testkit::docs::{Docs, Setting, clap_settings};

/// The worker's clap command (the one place to change when the struct moves).
fn worker_command() -> clap::Command {
    worker::cli::Cli::command()
}

/// Read by kube-rs when the worker builds its client, not by clap.
const KUBE_READS: &[&str] = &["KUBECONFIG"];

/// Read by the OpenTelemetry SDK itself (documented in one row of the telemetry table).
const OTEL_SDK_READS: &[&str] = &["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_BSP_*"];

/// The variables `sm_telemetry::init` reads (`TelemetryConfig::from_env`).
fn telemetry_reads() -> Vec<Setting> {
    let seen = RefCell::new(Vec::new());
    let _ = sm_telemetry::TelemetryConfig::from_lookup("sm-worker", |key| {
        seen.borrow_mut().push(Setting::env(key));
        None
    });
    seen.into_inner()
}

fn docs() -> Docs {
    Docs::load(env!("CARGO_MANIFEST_DIR").as_ref()).expect("the READMEs are readable")
}

#[test]
fn every_worker_setting_is_documented_once_and_nothing_else() {
    let mut reads = clap_settings(&worker_command());
    reads.extend(KUBE_READS.iter().map(|name| Setting::env(name)));
    reads.extend(telemetry_reads());
    let problems = docs().check("worker", &["telemetry"], &reads);
    assert!(problems.is_empty(), "worker/README.md is out of step with the worker's flags:\n{}", problems.join("\n"));
}

#[test]
fn the_telemetry_table_documents_what_sm_telemetry_reads() {
    let mut reads = telemetry_reads();
    assert!(reads.len() >= 10, "sm_telemetry reads fewer variables than expected: {reads:?}");
    reads.extend(OTEL_SDK_READS.iter().map(|name| Setting::env(name)));
    let problems = docs().check("telemetry", &[], &reads);
    assert!(problems.is_empty(), "the telemetry table is out of step with sm_telemetry:\n{}", problems.join("\n"));
}
