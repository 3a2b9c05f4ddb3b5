//! The kubeconfig the stand-in writes so the real worker binary and `kubectl` reach it: one
//! cluster at `http://ADDR`, one context (default namespace set) and a dummy token user.
//!
//! Rendering is pure; [`write`] replaces the file atomically (temp file + rename), so a reader
//! polling for the file never sees it half written.

use std::net::SocketAddr;
use std::path::Path;

/// Name used for the cluster, the context and the user.
pub const NAME: &str = "kube-standin";

/// Writing the kubeconfig failed.
#[derive(Debug, thiserror::Error)]
#[error("writing kubeconfig {path}: {source}")]
pub struct WriteError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// The kubeconfig YAML for a server at `addr` with `namespace` as the context's default.
pub fn render(addr: SocketAddr, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {NAME}
  cluster:
    server: http://{addr}
contexts:
- name: {NAME}
  context:
    cluster: {NAME}
    user: {NAME}
    namespace: {namespace}
current-context: {NAME}
users:
- name: {NAME}
  user:
    token: standin-dev-token
preferences: {{}}
"
    )
}

/// Write `contents` to `path` atomically, creating parent directories.
pub fn write(path: &Path, contents: &str) -> Result<(), WriteError> {
    let err = |source| WriteError { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kubeconfig_points_at_the_server_over_plain_http() {
        let yaml = render("127.0.0.1:4567".parse().unwrap(), "workspaces");
        assert!(yaml.contains("server: http://127.0.0.1:4567\n"));
        assert!(yaml.contains("current-context: kube-standin\n"));
        assert!(yaml.contains("namespace: workspaces\n"));
    }

    #[test]
    fn write_creates_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/kubeconfig");
        write(&path, "x").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
    }
}
