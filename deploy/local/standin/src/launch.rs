//! How the process kubelet runs one pod's container on this machine (pure): from the pod
//! spec to a [`Launch`], the command line, environment, volume mounts, port and readiness
//! probe; and [`Launch::argv`], the command that runs it in a private root.
//!
//! The mapping:
//! - a container whose image is a `code-server` image runs the local code-server executable
//!   with the container's arguments, except that `--bind-addr` becomes the pod's own loopback
//!   address with the same port;
//! - any other container runs its own `command` + `args` with the host's tools (the backup
//!   Job's `python3 -c` program);
//! - each `persistentVolumeClaim` volume mount is the claim's directory (see `volumes.rs`)
//!   bind-mounted at the mount path, read-only when the mount or the volume says so;
//! - a non-code-server container gets a file of its own at its `terminationMessagePath`
//!   (a mount whose host side is a file is a file bind mount; one under `/dev` gives the pod
//!   a `/dev` of its own, a tmpfs holding binds of the host's entries, so nothing is created
//!   in the host's `/dev`), read back into the pod status as a kubelet does.
//!
//! The private root: `unshare --mount` gives the process its own mount namespace, where a
//! tmpfs root receives a recursive bind of every top-level directory of the host and the
//! volume mounts at their paths (`/app`, `/backup`), and `chroot` enters it. So the
//! container's paths are the same as in a cluster, scripts run unchanged, and nothing is
//! created in the host's `/`. The container also gets its own PID namespace (`--pid --fork`):
//! when its main process ends, the kernel ends every process it started, as a container
//! runtime does; `setpriv --pdeathsig KILL` and `--kill-child` end it all if the stand-in
//! dies without stopping it (even by SIGKILL). Needs root (or `CAP_SYS_ADMIN`).

use crate::volumes::{VolumeError, Volumes};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// One bind mount of a volume directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory on this machine.
    pub host: PathBuf,
    /// Where the container sees it.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// An HTTP readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Request path, e.g. `/healthz`.
    pub path: String,
    /// Port on the pod's address.
    pub port: u16,
}

/// What to run for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Program and arguments, as the container sees them.
    pub command: Vec<String>,
    /// Environment added to the stand-in's own.
    pub env: Vec<(String, String)>,
    /// Volume mounts.
    pub mounts: Vec<Mount>,
    /// The readiness probe, if the container has an HTTP one.
    pub probe: Option<Probe>,
    /// Where a non-code-server container writes its termination message
    /// (`terminationMessagePath`, default `/dev/termination-log`); the process kubelet
    /// bind-mounts a file of its own there and reads it when the process exits.
    pub termination_log: Option<String>,
}

/// A pod this kubelet cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No container in the spec.
    #[error("the pod has no container")]
    NoContainer,
    /// A non-code-server container without a command (image entrypoints are unknown here).
    #[error("container {0:?} has no command (the process kubelet cannot know its image's entrypoint)")]
    NoCommand(String),
    /// A volume mount names a volume that is missing or not a PersistentVolumeClaim.
    #[error("volume {0:?} is not a persistentVolumeClaim volume of the pod")]
    Volume(String),
    /// A claim directory cannot be named.
    #[error(transparent)]
    Dir(#[from] VolumeError),
}

/// Whether `image` is a code-server image (`codercom/code-server:4.139.1`, ...).
pub fn is_code_server(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or(image);
    let name = name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(name, |(n, _)| n);
    name.rsplit('/').next().is_some_and(|last| last == "code-server")
}

fn port_of(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The [`Launch`] of `spec`'s first container for a pod in `ns` with address `ip`.
pub fn plan(
    spec: &PodSpec,
    ns: &str,
    ip: Ipv4Addr,
    code_server: &Path,
    volumes: &Volumes,
) -> Result<Launch, LaunchError> {
    let c = spec.containers.first().ok_or(LaunchError::NoContainer)?;
    let args: Vec<String> = c.args.clone().unwrap_or_default();
    let command = if c.image.as_deref().is_some_and(is_code_server) {
        let mut out = vec![code_server.display().to_string()];
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if a == "--bind-addr" {
                let port = it.next().and_then(|v| v.rsplit_once(':').map(|(_, p)| p.to_owned()));
                out.extend(["--bind-addr".to_owned(), format!("{ip}:{}", port.as_deref().unwrap_or("8080"))]);
            } else if let Some(v) = a.strip_prefix("--bind-addr=") {
                out.push(format!("--bind-addr={ip}:{}", v.rsplit_once(':').map_or("8080", |(_, p)| p)));
            } else {
                out.push(a);
            }
        }
        out
    } else {
        let mut command =
            c.command.clone().filter(|c| !c.is_empty()).ok_or_else(|| LaunchError::NoCommand(c.name.clone()))?;
        command.extend(args);
        command
    };
    let env = c.env.iter().flatten().filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect();
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let volume = spec.volumes.iter().flatten().find(|v| v.name == m.name);
        let Some(claim) = volume.and_then(|v| v.persistent_volume_claim.as_ref()) else {
            return Err(LaunchError::Volume(m.name.clone()));
        };
        mounts.push(Mount {
            host: volumes.dir(ns, &claim.claim_name)?,
            path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || claim.read_only.unwrap_or(false),
        });
    }
    let probe =
        c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).and_then(|h| {
            Some(Probe { path: h.path.clone().unwrap_or_else(|| "/".into()), port: port_of(c, &h.port)? })
        });
    let termination_log = (!c.image.as_deref().is_some_and(is_code_server))
        .then(|| c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into()));
    Ok(Launch { command, env, mounts, probe, termination_log })
}

/// The command prefix that gives what follows its own mount and PID namespaces, dying with
/// its parent (see the module docs).
pub const PRIVATE: [&str; 12] = [
    "setpriv",
    "--pdeathsig",
    "KILL",
    "--",
    "unshare",
    "--mount",
    "--pid",
    "--fork",
    "--kill-child=KILL",
    "--mount-proc",
    "--propagation=private",
    "--",
];

/// The script run inside the new mount namespace: `$1` is the root to build, then
/// `host path ro|rw` triples, `--`, and the command.
const ENTER: &str = r#"set -eu
root=$1; shift
private_dev=0
for a in "$@"; do
  case $a in --) break;; /dev/*) private_dev=1;; esac
done
mount -t tmpfs -o mode=0755 standin-pod "$root"
for e in /*; do
  n=${e#/}
  if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$root/$n"
  elif [ "$e" = /dev ] && [ $private_dev = 1 ]; then
    mkdir "$root/dev"; mount -t tmpfs -o mode=0755 standin-dev "$root/dev"
    for d in /dev/*; do
      m=${d#/dev/}
      if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$root/dev/$m"
      elif [ -d "$d" ]; then mkdir "$root/dev/$m"; mount --rbind "$d" "$root/dev/$m"
      else touch "$root/dev/$m"; mount --bind "$d" "$root/dev/$m"
      fi
    done
  elif [ -d "$e" ]; then mkdir "$root/$n"; mount --rbind "$e" "$root/$n"
  fi
done
while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mkdir -p "$root$2"; else mkdir -p "$(dirname "$root$2")"; touch "$root$2"; fi
  mount --bind "$1" "$root$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
  shift 3
done
shift
exec chroot "$root" "$@""#;

impl Launch {
    /// The host command line that runs this launch with its private root at `root` (an
    /// empty directory).
    pub fn argv(&self, root: &Path) -> Vec<String> {
        // The PID namespace matters: code-server's entry process forks the
        // server, and without it that child outlived a killed stand-in.
        let mut argv: Vec<String> =
            PRIVATE.iter().chain(&["sh", "-c", ENTER, "standin-pod"]).map(|s| (*s).to_owned()).collect();
        argv.push(root.display().to_string());
        for m in &self.mounts {
            argv.extend([
                m.host.display().to_string(),
                m.path.clone(),
                if m.read_only { "ro" } else { "rw" }.to_owned(),
            ]);
        }
        argv.push("--".into());
        argv.extend(self.command.iter().cloned());
        argv
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn code_server_images_are_recognised() {
        assert!(is_code_server("codercom/code-server:4.139.1"));
        assert!(is_code_server("registry:5000/codercom/code-server@sha256:abc"));
        assert!(is_code_server("code-server"));
        assert!(!is_code_server("python:3.13-alpine"));
        assert!(!is_code_server("example.com/code-server-tools:1"));
    }

    #[test]
    fn a_workspace_runs_local_code_server_on_the_pod_address_with_its_volume() {
        let s = spec(json!({
            "containers": [{
                "name": "code-server", "image": "codercom/code-server:4.139.1",
                "args": ["--bind-addr", "0.0.0.0:8080", "--auth", "none", "/app"],
                "env": [{"name": "HOME", "value": "/app/.home"}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "volumeMounts": [{"name": "data", "mountPath": "/app"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "ws-a-data"}}],
        }));
        let l =
            plan(&s, "ws", Ipv4Addr::new(127, 1, 2, 3), Path::new("/cs/code-server"), &Volumes::new(Path::new("/v")))
                .unwrap();
        assert_eq!(l.command, ["/cs/code-server", "--bind-addr", "127.1.2.3:8080", "--auth", "none", "/app"]);
        assert_eq!(l.env, [("HOME".to_owned(), "/app/.home".to_owned())]);
        assert_eq!(l.mounts, [Mount { host: "/v/ws/ws-a-data".into(), path: "/app".into(), read_only: false }]);
        assert_eq!(l.probe, Some(Probe { path: "/healthz".into(), port: 8080 }));
        assert_eq!(l.termination_log, None, "nobody reads a workspace's termination message");
    }

    #[test]
    fn a_job_runs_its_own_command_with_read_only_mounts_kept() {
        let s = spec(json!({
            "containers": [{
                "name": "backup", "image": "python:3.13-alpine",
                "command": ["sh", "-c", "echo hi"],
                "volumeMounts": [{"name": "data", "mountPath": "/app", "readOnly": true},
                                 {"name": "backup", "mountPath": "/backup"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "ws-a-data", "readOnly": true}},
                        {"name": "backup", "persistentVolumeClaim": {"claimName": "backups"}}],
        }));
        let l = plan(&s, "ws", Ipv4Addr::LOCALHOST, Path::new("/cs"), &Volumes::new(Path::new("/v"))).unwrap();
        assert_eq!(l.command, ["sh", "-c", "echo hi"]);
        assert_eq!(l.mounts.iter().map(|m| m.read_only).collect::<Vec<_>>(), [true, false]);
        assert_eq!(l.probe, None);
        assert_eq!(l.termination_log.as_deref(), Some("/dev/termination-log"));
        let argv = l.argv(Path::new("/r"));
        let tail = &argv[argv.iter().position(|a| a == "/r").unwrap()..];
        assert_eq!(
            tail,
            ["/r", "/v/ws/ws-a-data", "/app", "ro", "/v/ws/backups", "/backup", "rw", "--", "sh", "-c", "echo hi"]
        );
    }

    #[test]
    fn what_cannot_run_here_is_refused() {
        let none = spec(json!({"containers": [{"name": "x", "image": "busybox"}]}));
        let v = Volumes::new(Path::new("/v"));
        assert!(matches!(plan(&none, "ws", Ipv4Addr::LOCALHOST, Path::new("/cs"), &v), Err(LaunchError::NoCommand(_))));
        let empty_dir = spec(json!({
            "containers": [{"name": "x", "image": "busybox", "command": ["true"],
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }));
        assert!(matches!(
            plan(&empty_dir, "ws", Ipv4Addr::LOCALHOST, Path::new("/cs"), &v),
            Err(LaunchError::Volume(_))
        ));
    }
}
