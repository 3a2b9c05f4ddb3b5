//! The contract crate stays pure: its manifest's `[dependencies]` (and
//! any target-specific or build dependencies) name only serde, rmp-serde
//! and thiserror. Runtime crates (tokio, redis, kube, hyper,
//! opentelemetry, ...) belong to `sm-redis`, `sm-telemetry` or the
//! binaries; dev-dependencies (the script tests' redis-server) are free.
#![allow(clippy::unwrap_used)]

/// The only crates `proto-types` may depend on.
const ALLOWED: &[&str] = &["serde", "rmp-serde", "thiserror"];

/// Runtime crates named in the failure message when they show up.
const RUNTIME: &[&str] =
    &["tokio", "redis", "kube", "k8s-openapi", "hyper", "opentelemetry", "tracing", "reqwest", "futures"];

/// `(section, dependency)` for every dependency line of a manifest.
fn dependencies(manifest: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            // `[dependencies.tokio]` style.
            if let Some(name) = section.split_once("dependencies.") {
                out.push((format!("{}dependencies", name.0), name.1.to_owned()));
            }
            continue;
        }
        let is_dep_section = section == "dependencies"
            || section == "build-dependencies"
            || (section.starts_with("target.") && section.ends_with(".dependencies"))
            || (section.starts_with("target.") && section.ends_with(".build-dependencies"));
        if !is_dep_section || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let name = key.trim().split('.').next().unwrap().trim_matches('"');
            out.push((section.clone(), name.to_owned()));
        }
    }
    out
}

fn impure(manifest: &str) -> Vec<String> {
    dependencies(manifest)
        .into_iter()
        .filter(|(section, name)| !section.ends_with("dev-dependencies") && !ALLOWED.contains(&name.as_str()))
        .map(|(section, name)| {
            let runtime = RUNTIME.iter().any(|r| name.starts_with(r));
            format!("[{section}] {name}{}", if runtime { " (a runtime crate)" } else { "" })
        })
        .collect()
}

#[test]
fn proto_types_depends_only_on_serde_rmp_serde_and_thiserror() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let names: Vec<String> = dependencies(&manifest).into_iter().map(|(_, n)| n).collect();
    assert!(names.iter().any(|n| n == "serde"), "the manifest scan found the dependencies: {names:?}");
    let found = impure(&manifest);
    assert!(
        found.is_empty(),
        "proto-types must stay pure; move these to sm-redis, sm-telemetry or a binary: {found:?}"
    );
}

#[test]
fn the_scan_catches_runtime_crates_in_every_form() {
    let manifest = r#"
[package]
name = "proto-types"

[dependencies]
serde.workspace = true
tokio = { workspace = true }
"redis" = "1"

[dependencies.hyper]
version = "1"

[target.'cfg(unix)'.dependencies]
opentelemetry = "0.33"

[dev-dependencies]
kube.workspace = true
"#;
    let found = impure(manifest);
    assert_eq!(
        found,
        [
            "[dependencies] tokio (a runtime crate)",
            "[dependencies] redis (a runtime crate)",
            "[dependencies] hyper (a runtime crate)",
            "[target.'cfg(unix)'.dependencies] opentelemetry (a runtime crate)",
        ]
    );
}
