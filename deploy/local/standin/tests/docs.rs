//! Docs drift: every flag and environment variable of `kube-standin` is
//! documented in exactly one row of `deploy/README.md`'s `kube-standin`
//! table (its log filter `RUST_LOG` in the shared `telemetry` table), and
//! that table documents nothing the stand-in does not read.

use clap::CommandFactory as _;
use testkit::docs::{Docs, Setting, clap_settings};

/// The stand-in's clap command (the one place to change when the struct moves).
fn standin_command() -> clap::Command {
    kube_standin::config::Args::command()
}

/// Read by `tracing_subscriber::EnvFilter::try_from_default_env` in `main.rs`, not by clap.
const LOG_READS: &[&str] = &["RUST_LOG"];

#[test]
fn every_standin_setting_is_documented_once_and_nothing_else() {
    let docs = Docs::load(env!("CARGO_MANIFEST_DIR").as_ref()).expect("the READMEs are readable");
    let mut reads = clap_settings(&standin_command());
    reads.extend(LOG_READS.iter().map(|name| Setting::env(name)));
    let problems = docs.check("kube-standin", &["telemetry"], &reads);
    assert!(problems.is_empty(), "deploy/README.md is out of step with kube-standin's flags:\n{}", problems.join("\n"));
}
