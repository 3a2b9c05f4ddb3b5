//! One running container process of the process kubelet: spawned from a [`Launch`] in its
//! own process group with its output appended to the pod's log file, signalled as a group
//! (SIGTERM to stop, SIGKILL when the grace period is over), and killed as a group when
//! dropped, so no child outlives the stand-in's handle on it.
//!
//! Readiness ([`probe`]) is one plain `GET` over TCP to the pod's address: any `2xx`/`3xx`
//! answer within a second is ready, as the kubelet's HTTP probe counts it.

use crate::launch::{Launch, Probe};
use rustix::process::{Pid, Signal, kill_process_group};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running (or exited, not yet reaped) container process.
#[derive(Debug)]
pub struct PodProcess {
    child: tokio::process::Child,
    group: Option<Pid>,
}

/// Starting a process failed.
#[derive(Debug, thiserror::Error)]
#[error("starting {what}: {source}")]
pub struct SpawnError {
    /// What was being prepared or started.
    pub what: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

impl PodProcess {
    /// Starts `launch` with its private root at `root` (created, must be empty) and output
    /// appended to `log`.
    pub fn spawn(launch: &Launch, root: &Path, log: &Path) -> Result<Self, SpawnError> {
        let fail = |what: String| move |source| SpawnError { what, source };
        for m in launch.mounts.iter().filter(|m| !m.host.is_file()) {
            std::fs::create_dir_all(&m.host).map_err(fail(format!("volume {}", m.host.display())))?;
        }
        std::fs::create_dir_all(root).map_err(fail(format!("pod root {}", root.display())))?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(fail(format!("log dir {}", dir.display())))?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(fail(format!("log {}", log.display())))?;
        let err = out.try_clone().map_err(fail(format!("log {}", log.display())))?;
        let argv = launch.argv(root);
        let (program, args) = argv.split_first().expect("argv always starts with setpriv");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(fail(format!("{:?}", launch.command)))?;
        let group = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
        Ok(Self { child, group })
    }

    /// Sends SIGTERM to the process group (a polite stop).
    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// Sends SIGKILL to the process group.
    pub fn kill(&self) {
        self.signal(Signal::KILL);
    }

    fn signal(&self, signal: Signal) {
        if let Some(group) = self.group {
            // ESRCH: the group is already gone, which is what we want.
            let _ = kill_process_group(group, signal);
        }
    }

    /// The exit status, once the process has exited (never blocks).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.try_wait() {
            Ok(status) => status,
            // An error means it cannot be waited for: treat it as gone.
            Err(_) => Some(std::os::unix::process::ExitStatusExt::from_raw(1 << 8)),
        }
    }

    /// Waits for the exit (after [`terminate`](Self::terminate) or [`kill`](Self::kill)).
    pub async fn wait(&mut self) {
        let _ = self.child.wait().await;
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        // The whole group: code-server's own children too.
        self.kill();
    }
}

/// Whether `probe` answers on `ip` with a 2xx or 3xx status within a second.
pub async fn probe(ip: Ipv4Addr, probe: &Probe) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(SocketAddr::from((ip, probe.port))).await.ok()?;
        let request = format!("GET {} HTTP/1.0\r\nHost: {ip}:{}\r\nConnection: close\r\n\r\n", probe.path, probe.port);
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut head[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = std::str::from_utf8(&head[..got]).ok()?;
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten().unwrap_or(false)
}
