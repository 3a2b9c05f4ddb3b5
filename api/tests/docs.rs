//! Docs drift: every flag and environment variable of the api binary is
//! documented in exactly one row of `api/README.md`'s `api` table (or of
//! the shared `telemetry` table in `worker/README.md`), and that table
//! documents nothing the api does not read. Adding a flag without its row,
//! or removing one and leaving the row, fails here.

use std::cell::RefCell;

use clap::CommandFactory as _;
use testkit::docs::{Docs, Setting, clap_settings};

/// The api's clap command (the one place to change when the struct moves).
fn api_command() -> clap::Command {
    api::config::Args::command()
}

/// The variables `sm_telemetry` reads when the api calls `TelemetryConfig::from_env`.
fn telemetry_reads() -> Vec<Setting> {
    let seen = RefCell::new(Vec::new());
    let _ = sm_telemetry::TelemetryConfig::from_lookup("sm-api", |key| {
        seen.borrow_mut().push(Setting::env(key));
        None
    });
    seen.into_inner()
}

#[test]
fn every_api_setting_is_documented_once_and_nothing_else() {
    let docs = Docs::load(env!("CARGO_MANIFEST_DIR").as_ref()).expect("the READMEs are readable");
    let mut reads = clap_settings(&api_command());
    // `LOG_FORMAT` is both an api flag and a telemetry variable: one row, with the flag.
    let telemetry: Vec<Setting> =
        telemetry_reads().into_iter().filter(|t| !reads.iter().any(|r| r.env == t.env)).collect();
    reads.extend(telemetry);
    let problems = docs.check("api", &["telemetry"], &reads);
    assert!(problems.is_empty(), "api/README.md is out of step with the api's flags:\n{}", problems.join("\n"));
}

/// The gateway's clap command.
fn gateway_command() -> clap::Command {
    api::gateway::GatewayArgs::command()
}

#[test]
fn every_gateway_setting_is_documented_once_and_nothing_else() {
    let docs = Docs::load(env!("CARGO_MANIFEST_DIR").as_ref()).expect("the READMEs are readable");
    let mut reads = clap_settings(&gateway_command());
    let telemetry: Vec<Setting> =
        telemetry_reads().into_iter().filter(|t| !reads.iter().any(|r| r.env == t.env)).collect();
    reads.extend(telemetry);
    // Settings shared with the api (same variable, same flag) keep their one row in the api's table.
    let problems = docs.check("gateway", &["api", "telemetry"], &reads);
    assert!(problems.is_empty(), "api/README.md is out of step with the gateway's flags:\n{}", problems.join("\n"));
}
