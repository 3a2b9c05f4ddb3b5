//! What a person sees, in a real browser: Debian's chromium driven by
//! playwright-core (`tests/browser/drive.mjs`) against real processes:
//! redis-server, the stand-in with its process kubelet (each pod a real
//! code-server), a worker, the api and the gateway.
//!
//! 1. Create a session and open its access link: the VS Code workbench
//!    renders and its Explorer shows a file seeded in the volume.
//! 2. Sleep it through the api; navigating again shows the waking page, then
//!    the workbench with the file (woken by the gateway, through the worker).
//! 3. A fresh browser context (no cookie) gets the 401 page.
//!
//! Screenshots of each step are kept under `target/tmp/gateway-browser/`.
//! Needs code-server and the browser that `make test` installs first; without
//! them this test fails with that instruction, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::stack::{API_KEY, Stack, StackConfig};

const JOB_TIMEOUT: Duration = Duration::from_secs(180);
const SEEDED: &str = "hello-from-the-volume.txt";

fn stack(dir: &Path) -> Stack {
    Stack::start(StackConfig { gateway: true, ..StackConfig::real_workspaces(dir) }).unwrap()
}

fn run_job(stack: &Stack, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = stack.api(method, path, body).unwrap();
    assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
    let job = r.json()["job_id"].as_str().unwrap().to_owned();
    let v = stack.wait_job(&job, JOB_TIMEOUT).unwrap();
    assert_eq!(v["state"], "succeeded", "{method} {path}: {v}\n{}", stack.logs());
    r.json()
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gateway-browser");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_person_opens_the_workspace_it_sleeps_and_wakes_on_access_and_strangers_get_401() {
    let playwright = testkit::playwright();
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path());

    let created = run_job(&stack, "POST", "/session/create", Some(&json!({ "user_id": "browser@example.com" })));
    let id = created["uuid"].as_str().unwrap().to_owned();
    let workspace_url = created["workspace_url"].as_str().unwrap().to_owned();
    assert!(workspace_url.contains(".ws.localhost:"), "{workspace_url}");
    let volume = dir.path().join("volumes").join("workspaces").join(format!("ws-{id}-data"));
    std::fs::write(volume.join(SEEDED), b"written into the volume by the test\n").unwrap();

    // A fresh link, so the 5-minute lifetime starts now.
    let link = stack.api("POST", &format!("/session/{id}/access"), None).unwrap();
    assert_eq!(link.status, 200, "{}", link.text());
    let access_url = link.json()["access_url"].as_str().unwrap().to_owned();

    let shots = shots_dir();
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/drive.mjs"))
        .env("PLAYWRIGHT_DIR", &playwright)
        .env("ACCESS_URL", &access_url)
        .env("WORKSPACE_URL", &workspace_url)
        .env("SEEDED_FILE", SEEDED)
        .env("SHOTS_DIR", &shots)
        .env("API", format!("http://{}", stack.api_addr))
        .env("API_KEY", API_KEY)
        .env("SESSION", &id)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser driver failed:\n{stderr}\n{stdout}\n{}", stack.logs());
    let steps: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(steps.len(), 3, "{stdout}");

    // 1. The token was exchanged: the page ended on the workspace URL without
    //    it, holding a host-only, HttpOnly cookie.
    let s1 = &steps[0];
    let final_url = s1["url"].as_str().unwrap();
    assert!(!final_url.contains("sm_token"), "the token stays out of the address bar: {s1}");
    assert!(final_url.starts_with(workspace_url.trim_end_matches('/')), "{s1}");
    let host = workspace_url.split("://").nth(1).and_then(|r| r.split(':').next()).unwrap();
    let cookies = s1["cookies"].as_array().unwrap();
    assert!(!cookies.is_empty(), "{s1}");
    for c in cookies {
        assert_eq!(c["domain"], host, "host-only (no Domain attribute): {c}");
        assert_eq!(c["httpOnly"], true, "{c}");
        assert_eq!(c["sameSite"], "Lax", "{c}");
    }

    // 2. The waking page came first (200), then the workbench; the wake was the gateway's.
    let s2 = &steps[1];
    assert_eq!(s2["status"], 200, "{s2}");
    assert!(s2["waking_text"].as_str().unwrap().to_lowercase().contains("waking"), "{s2}");
    let session = stack.api("GET", &format!("/session/{id}"), None).unwrap().json();
    assert_eq!(session["session"]["status"], "running", "{session}");
    let last_job = session["last_job_id"].as_str().unwrap();
    let job = stack.api("GET", &format!("/jobs/{last_job}"), None).unwrap().json();
    assert_eq!(job["command"], "wake", "{job}");
    assert_eq!(job["origin"], "gateway", "the gateway woke it, not a client: {job}");

    // 3. No cookie: the 401 page.
    let s3 = &steps[2];
    assert_eq!(s3["status"], 401, "{s3}");

    for shot in ["1-workbench.png", "2a-waking.png", "2b-workbench-after-wake.png", "3-unauthorized.png"] {
        let len = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {shot} kept ({len} bytes)");
    }
}
