//! Helpers of the end-to-end tests that drive a whole [`Stack`] through its api.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use testkit::stack::Stack;

/// How long one job may take end to end (a real code-server start included).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends a command, expects 202 and waits for its job; returns the job.
pub fn run(stack: &Stack, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = stack.api(method, path, body).unwrap();
    assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
    stack.wait_job(r.json()["job_id"].as_str().unwrap(), JOB_TIMEOUT).unwrap()
}

/// `GET path`, expecting 200; the JSON body.
pub fn get(stack: &Stack, path: &str) -> Value {
    let r = stack.api("GET", path, None).unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
