//! Shared test harness: start the stand-in on port 0 with its kubeconfig in a temp dir, and a
//! `kube::Client` built from that kubeconfig (as the worker binary builds it).
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_standin::{Config, Standin};
use std::path::PathBuf;

pub struct Harness {
    pub standin: Standin,
    pub client: kube::Client,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn kubeconfig(&self) -> PathBuf {
        self.standin.kubeconfig_path().to_path_buf()
    }
}

/// Start with the default test config, adjusted by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config, &std::path::Path)) -> Harness {
    kube_standin::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().join("kube/config"));
    config.kubelet.mode = kube_standin::KubeletMode::Off;
    tweak(&mut config, dir.path());
    let standin = Standin::start(&config).await.unwrap();
    let client = client_from(&standin.kubeconfig_path().to_path_buf()).await;
    Harness { standin, client, dir }
}

/// A client from a kubeconfig file, like the worker's.
pub async fn client_from(path: &PathBuf) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// GET `path` raw: status code and parsed JSON body.
pub async fn raw_get(client: &kube::Client, path: &str) -> (u16, serde_json::Value) {
    let req = http::Request::get(path).body(kube::client::Body::from(Vec::new())).unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}
