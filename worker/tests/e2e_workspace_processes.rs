//! End to end with real workspaces: redis-server + api + worker + the stand-in cluster with
//! its process kubelet (`STANDIN_KUBELET=process`), so each session's pod is a real local
//! code-server and its backup Job runs its real script. Needs the pinned code-server that
//! `make test` installs first (`deploy/local/install-code-server.sh`); without it these tests
//! fail with that instruction, they never skip.
//!
//! code-server serves workspace files at `/vscode-remote-resource?path=<absolute path>`
//! (no auth with `--auth none`); the workspace sees its volume at `/app`, as in a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::stack::{Stack, StackConfig, wait_until};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const NS: &str = "workspaces";

/// A stack whose stand-in runs pods as processes, with its files under `dir`.
fn stack(dir: &Path) -> Stack {
    Stack::start(StackConfig::real_workspaces(dir)).unwrap()
}

fn volume(dir: &Path, id: &str) -> PathBuf {
    dir.join("volumes").join(NS).join(format!("ws-{id}-data"))
}

fn run(stack: &Stack, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = stack.api(method, path, body).unwrap();
    assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
    let job = r.json()["job_id"].as_str().unwrap().to_owned();
    let v = stack.wait_job(&job, JOB_TIMEOUT).unwrap();
    assert_eq!(v["state"], "succeeded", "{method} {path}: {v}\n{}", stack.logs());
    r.json()
}

fn create(stack: &Stack) -> String {
    let v = run(stack, "POST", "/session/create", Some(&json!({ "user_id": "real@example.com" })));
    v["uuid"].as_str().unwrap().to_owned()
}

/// The Service's `clusterIP:port`, which the stand-in makes reach the pod.
fn service_addr(stack: &Stack, id: &str) -> SocketAddr {
    let svc = stack.kube_get(&format!("/api/v1/namespaces/{NS}/services/ws-{id}")).unwrap().json();
    let ip: Ipv4Addr =
        svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{svc}"));
    let port = svc["spec"]["ports"][0]["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap();
    assert!(ip.is_loopback(), "a local address: {ip}");
    SocketAddr::from((ip, port))
}

/// The session's `upstream` field in Redis (what the gateway proxies to).
fn upstream(stack: &Stack, id: &str) -> Option<String> {
    let mut c = redis::Client::open(stack.redis.url()).unwrap().get_connection().unwrap();
    redis::cmd("HGET")
        .arg(proto_types::keys::session(id))
        .arg(proto_types::record::session::UPSTREAM)
        .query(&mut c)
        .unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Option<testkit::http::Response> {
    testkit::http::request(addr, "GET", path, &[], None).ok()
}

fn healthz(addr: SocketAddr) -> bool {
    get(addr, "/healthz").is_some_and(|r| r.status == 200 && r.text().contains("\"status\""))
}

/// The file at `/app/<name>` as code-server serves it.
fn served(addr: SocketAddr, name: &str) -> Option<Vec<u8>> {
    let r = get(addr, &format!("/vscode-remote-resource?path=/app/{name}"))?;
    (r.status == 200).then_some(r.body)
}

fn pod(stack: &Stack, id: &str) -> Value {
    stack.kube_get(&format!("/api/v1/namespaces/{NS}/pods/ws-{id}-0")).unwrap().json()
}

/// The pid of the code-server process bound to `addr` (not the stand-in's `unshare` wrapper
/// around it, whose command line names the address too).
fn workspace_pid(addr: SocketAddr) -> Option<i32> {
    let needle = format!("--bind-addr\0{addr}");
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).into_owned();
            (cmdline.contains(&needle) && !cmdline.contains("standin-pod")).then_some(pid)
        })
        .collect();
    pids.sort();
    pids.first().copied()
}

/// The file `inner` of the zip at `zip`, read with Python's `zipfile` (the same library wrote it).
fn unzip(zip: &Path, inner: &str) -> Vec<u8> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))"])
        .arg(zip)
        .arg(inner)
        .output()
        .unwrap();
    assert!(out.status.success(), "reading {inner} from {}: {}", zip.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn a_session_is_a_real_code_server_that_sleeps_wakes_restarts_and_is_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path());

    // 1. Create: the process answers /healthz on the Service's address.
    let id = create(&stack);
    let addr = service_addr(&stack, &id);
    assert!(wait_until(Duration::from_secs(30), || healthz(addr).then_some(())).is_some(), "{}", stack.logs());
    assert_eq!(pod(&stack, &id)["status"]["podIP"], addr.ip().to_string(), "the Service reaches the pod's address");
    assert_eq!(upstream(&stack, &id), Some(addr.to_string()), "the gateway's upstream is the Service's address");

    // 2. A file in the volume; sleep: the process is gone, the directory stays.
    let content: Vec<u8> = (0..=255u8).cycle().take(3000).chain(*b"\nmade by the e2e test\n").collect();
    let vol = volume(dir.path(), &id);
    std::fs::write(vol.join("hello.txt"), &content).unwrap();
    run(&stack, "POST", &format!("/session/{id}/sleep"), None);
    assert!(get(addr, "/healthz").is_none(), "nothing listens on {addr} while sleeping");
    assert_eq!(workspace_pid(addr), None, "no process of the workspace is left");
    assert_eq!(upstream(&stack, &id), None, "a sleeping session has no upstream");
    assert_eq!(std::fs::read(vol.join("hello.txt")).unwrap(), content, "the volume keeps its files");

    // 3. Wake: code-server serves the same file from /app.
    run(&stack, "POST", &format!("/session/{id}/wake"), None);
    let got = wait_until(Duration::from_secs(30), || served(addr, "hello.txt"));
    assert_eq!(got.as_deref(), Some(content.as_slice()), "{}", stack.logs());
    assert_eq!(upstream(&stack, &id), Some(addr.to_string()), "running again: the upstream is back");

    // The process killed by hand comes back; the pod counts one restart.
    let pid = workspace_pid(addr).expect("the workspace process runs");
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    let restarted = wait_until(Duration::from_secs(30), || {
        let p = pod(&stack, &id);
        (p["status"]["containerStatuses"][0]["restartCount"] == 1 && healthz(addr)).then_some(p)
    });
    assert!(restarted.is_some(), "pod after the kill: {}\n{}", pod(&stack, &id), stack.logs());
    assert_ne!(workspace_pid(addr), Some(pid));
    // `kubectl logs` reads the pod's output through the log subresource.
    let log = stack.kube_get(&format!("/api/v1/namespaces/{NS}/pods/ws-{id}-0/log")).unwrap();
    assert!(log.text().contains("HTTP server listening"), "pod log: {}", log.text());

    // 4. Delete: the backup holds the file byte for byte, the volume is gone.
    run(&stack, "DELETE", &format!("/session/{id}"), None);
    let s = stack.api("GET", &format!("/session/{id}"), None).unwrap().json();
    let file = s["backup_file"].as_str().expect("the session names its backup");
    let zip = dir.path().join("volumes").join(NS).join("backup-pvc").join(file);
    assert!(zip.is_file(), "{} exists\n{}", zip.display(), stack.logs());
    assert_eq!(unzip(&zip, "app/hello.txt"), content);
    assert!(
        wait_until(Duration::from_secs(10), || (!vol.exists()).then_some(())).is_some(),
        "{} is removed",
        vol.display()
    );
}

#[test]
fn a_running_session_survives_a_restart_of_the_standin() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = stack(dir.path());
    let id = create(&stack);
    let addr = service_addr(&stack, &id);
    std::fs::write(volume(dir.path(), &id).join("kept.txt"), b"still here\n").unwrap();
    assert!(wait_until(Duration::from_secs(30), || served(addr, "kept.txt")).is_some(), "{}", stack.logs());

    stack.restart_standin().unwrap();
    assert!(dir.path().join("state.json").is_file(), "the stand-in wrote its state");
    // Reloaded: the same objects, the same address, a new process on the same files.
    let got = wait_until(Duration::from_secs(60), || served(addr, "kept.txt"));
    assert_eq!(got.as_deref(), Some(&b"still here\n"[..]), "{}", stack.logs());
    assert_eq!(service_addr(&stack, &id), addr);
    let s = stack.api("GET", &format!("/session/{id}"), None).unwrap().json();
    assert_eq!((s["session"]["status"].as_str(), s["replicas"].as_u64()), (Some("running"), Some(1)), "{s}");
    let d = stack.kube_get(&format!("/apis/apps/v1/namespaces/{NS}/deployments/ws-{id}")).unwrap().json();
    assert_eq!(d["spec"]["replicas"], 1, "the cluster agrees with the api: {d}");
    let ready = wait_until(Duration::from_secs(30), || {
        let d = stack.kube_get(&format!("/apis/apps/v1/namespaces/{NS}/deployments/ws-{id}")).ok()?.json();
        (d["status"]["readyReplicas"] == 1).then_some(())
    });
    assert!(ready.is_some(), "{}", stack.logs());
}

/// Pids of the processes that inherited this stack's stand-in environment
/// (the stand-in's pods and everything they started).
fn pod_processes(dir: &Path) -> Vec<u32> {
    let marker = format!("STANDIN_VOLUMES_DIR={}", dir.join("volumes").display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Regression: code-server's entry process forks the server. When the
/// workspace process died (killed by hand, as the restart test does), that
/// child lived on, reparented to init, and was seen at 55% CPU long after the
/// test ended. Each pod now has its own PID namespace, so when a pod's main
/// process dies nothing it started survives, and a killed stand-in leaves
/// nothing behind either.
#[test]
fn regression_a_dead_workspace_process_leaves_no_child_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = stack(dir.path());
    let id = create(&stack);
    let addr = service_addr(&stack, &id);
    assert!(wait_until(Duration::from_secs(60), || healthz(addr).then_some(())).is_some(), "{}", stack.logs());
    let standin = stack.standin_mut().id().expect("the stand-in runs");
    let before: Vec<u32> = pod_processes(dir.path()).into_iter().filter(|p| *p != standin).collect();
    assert!(before.len() >= 2, "code-server runs as several processes: {before:?}");
    let pid = workspace_pid(addr).expect("the workspace process runs");
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    let restarted = wait_until(Duration::from_secs(30), || {
        let p = pod(&stack, &id);
        (p["status"]["containerStatuses"][0]["restartCount"] == 1 && healthz(addr)).then_some(())
    });
    assert!(restarted.is_some(), "pod after the kill: {}\n{}", pod(&stack, &id), stack.logs());
    let survivors: Vec<String> = pod_processes(dir.path())
        .into_iter()
        .filter(|p| before.contains(p))
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    assert!(survivors.is_empty(), "processes of the dead workspace still run: {survivors:#?}");

    stack.standin_mut().kill();
    let gone = wait_until(Duration::from_secs(15), || pod_processes(dir.path()).is_empty().then_some(()));
    assert!(gone.is_some(), "left behind by a killed stand-in: {:?}", pod_processes(dir.path()));
}
