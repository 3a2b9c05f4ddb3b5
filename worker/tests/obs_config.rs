//! A bad telemetry setting stops the api and the worker at start with exit
//! status 64 and a one-line reason, before they touch Redis or Kubernetes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `bin` with `env` (no Redis, no cluster needed) and returns its exit code and stderr.
fn run(bin: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let path = testkit::stack::bin_dir().join(bin);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` first", path.display());
    let mut child = Command::new(path)
        // Unused ports and addresses: the process must exit before using them.
        .env("API_KEYS", "obs-config-test-key-0123456789")
        .env("ACCESS_KEYS", "obs:0123456789abcdef0123456789abcdef")
        .env("API_ADDR", "127.0.0.1:0")
        .env("WORKER_METRICS_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:1/")
        .env("KUBECONFIG", "/nonexistent")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} kept running with a bad telemetry setting");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_telemetry_settings_exit_64_with_a_one_line_reason() {
    for bin in ["worker", "api"] {
        for (var, value, reason) in [
            ("OTEL_TRACES_SAMPLER", "sometimes", "OTEL_TRACES_SAMPLER"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url", "endpoint"),
            ("RUST_LOG", "info,=[", "RUST_LOG"),
        ] {
            let (code, stderr) = run(bin, &[(var, value)]);
            assert_eq!(code, Some(64), "{bin} with {var}={value}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
            assert!(stderr.starts_with(&format!("{bin}: ")) && stderr.contains(reason), "{bin}: {stderr}");
        }
    }
}

#[test]
fn unparsable_flags_exit_64_with_a_one_line_reason() {
    for (bin, var, value) in [
        ("worker", "WORKER_CONCURRENCY", "many"),
        ("worker", "WORKER_CONCURRENCY", "0"),
        ("worker", "WORKSPACE_URL_PATTERN", "https://no-placeholder.example.com"),
        ("api", "LOG_FORMAT", "xml"),
        ("api", "RATE_LIMIT_PER_MINUTE", "-1"),
        ("api", "API_KEYS", "your-secure-api-key-change-in-production"),
    ] {
        let (code, stderr) = run(bin, &[(var, value)]);
        assert_eq!(code, Some(64), "{bin} with {var}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(&format!("{bin}: ")), "{bin}: {stderr}");
    }
}
