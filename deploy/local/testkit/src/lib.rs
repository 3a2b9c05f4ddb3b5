//! Dev-only test harness shared by the integration tests of every crate.
//!
//! - [`RedisServer`]: a private `redis-server` on a free loopback port, in
//!   its own temporary directory, that a test can [`kill`](RedisServer::kill)
//!   and [`restart`](RedisServer::restart) (same port, same data directory,
//!   so AOF survives). Never the machine's shared server on 6379.
//! - [`free_port`]: a currently unused loopback port.
//! - [`ChildGuard`]: a child process killed when the guard drops, so a
//!   failing test never leaves servers behind.
//! - [`http::request`]: a blocking one-shot HTTP/1.1 client for driving
//!   real processes over loopback.
//! - [`stack::Stack`]: the whole system (redis, stand-in cluster, workers,
//!   api) as real processes for end-to-end tests.
//! - [`code_server`]: the pinned local code-server that `make test` installs, for the
//!   tests that run real workspaces.
//! - [`otlp::OtlpReceiver`]: an in-test OTLP/HTTP trace receiver that
//!   collects exported spans and lets a test wait for them.
//! - [`docs::Docs`]: the READMEs' environment tables and links, checked
//!   against what the binaries and scripts really read (docs-drift tests).
//!
//! Not for production code: nothing outside `[dev-dependencies]` may use it.

pub mod docs;
pub mod http;
pub mod otlp;
pub mod stack;

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The code-server executable installed by `deploy/local/install-code-server.sh` (which
/// `make test` runs first). Panics with the reason when it is not installed: the tests that
/// need it fail rather than skip.
pub fn code_server() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install-code-server.sh");
    let out = Command::new("bash").arg(&script).arg("--check").stderr(Stdio::piped()).output();
    match out {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        Ok(out) => panic!("{}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => panic!("running {}: {e}", script.display()),
    }
}

/// The folder holding `node_modules/playwright-core` (Debian's chromium is
/// at `/usr/bin/chromium`), installed by `deploy/local/install-browser.sh`
/// (`make test` runs it first). Panics with that instruction when missing:
/// the browser test never skips.
pub fn playwright() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install-browser.sh");
    let out = Command::new("bash").arg(&script).arg("--check").stderr(Stdio::piped()).output();
    match out {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        Ok(out) => panic!("{}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => panic!("running {}: {e}", script.display()),
    }
}

/// A currently free TCP port on 127.0.0.1.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Wraps a spawned child.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The child's process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }

    /// Kills the child now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Mutable access to the child, e.g. to send a signal or wait.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }

    /// Gives up ownership without killing.
    pub fn into_inner(mut self) -> Option<Child> {
        self.0.take()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a [`RedisServer`] persists data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// Nothing on disk (fast; a restart starts empty).
    #[default]
    None,
    /// AOF with `appendfsync always`, so every acknowledged write survives a kill.
    AofAlways,
    /// AOF with `appendfsync everysec`, as in production.
    AofEverySec,
}

impl Persistence {
    /// The AOF setting the deploy runs Redis with: `appendfsync` of
    /// `deploy/base/redis.conf`, so a test of the durability promise follows the
    /// deploy default when it changes.
    pub fn deploy_default() -> io::Result<Self> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../base/redis.conf");
        let conf = std::fs::read_to_string(&path)?;
        Self::from_redis_conf(&conf).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: no appendfsync always|everysec", path.display()))
        })
    }

    /// The persistence a redis.conf text asks for (`appendonly yes` and its `appendfsync`).
    pub fn from_redis_conf(conf: &str) -> Option<Self> {
        let setting = |name: &str| {
            conf.lines().filter_map(|l| l.trim().strip_prefix(name)).map(str::trim).next_back().map(str::to_owned)
        };
        if setting("appendonly ").as_deref() != Some("yes") {
            return Some(Self::None);
        }
        match setting("appendfsync ").as_deref() {
            Some("always") => Some(Self::AofAlways),
            Some("everysec") => Some(Self::AofEverySec),
            _ => None,
        }
    }
}

/// A private redis-server for one test.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    persistence: Persistence,
    child: ChildGuard,
}

/// The redis-server binary: `$REDIS_SERVER_BIN` or `redis-server` on PATH.
fn redis_binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("redis-server"))
}

impl RedisServer {
    /// Starts a server with no persistence and waits until it answers PING.
    pub fn start() -> io::Result<Self> {
        Self::start_with(Persistence::None)
    }

    /// Starts a server with the given persistence and waits until it answers PING.
    pub fn start_with(persistence: Persistence) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("sm-redis-").tempdir()?;
        let port = free_port()?;
        let child = spawn(port, dir.path(), persistence)?;
        let server = Self { port, dir, persistence, child };
        server.wait_ready()?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a loopback redis URL is always valid")
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL (no chance to flush anything but what
    /// its persistence mode already wrote).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) -> io::Result<()> {
        self.child.kill();
        // The port may linger briefly after a kill; retry for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = spawn(self.port, self.dir.path(), self.persistence)?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => self.child.kill(),
            }
        }
    }

    fn wait_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = self.client();
        loop {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut conn);
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "redis-server did not answer PING within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(port: u16, dir: &Path, persistence: Persistence) -> io::Result<ChildGuard> {
    let mut cmd = Command::new(redis_binary());
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        .arg("--save")
        .arg("")
        .arg("--daemonize")
        .arg("no")
        .arg("--maxmemory-policy")
        .arg("noeviction")
        .arg("--loglevel")
        .arg("warning")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match persistence {
        Persistence::None => {
            cmd.arg("--appendonly").arg("no");
        }
        Persistence::AofAlways => {
            cmd.arg("--appendonly").arg("yes").arg("--appendfsync").arg("always");
        }
        Persistence::AofEverySec => {
            cmd.arg("--appendonly").arg("yes").arg("--appendfsync").arg("everysec");
        }
    }
    let child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not start redis-server (is it installed? `make test` installs it): {e}"),
        )
    })?;
    Ok(ChildGuard::new(child))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_follows_the_deploy_redis_conf() {
        let conf = "appendonly yes\n# appendfsync always\nappendfsync everysec\n";
        assert_eq!(Persistence::from_redis_conf(conf), Some(Persistence::AofEverySec));
        assert_eq!(Persistence::from_redis_conf("appendonly yes\nappendfsync always"), Some(Persistence::AofAlways));
        assert_eq!(Persistence::from_redis_conf("appendonly no\n"), Some(Persistence::None));
        assert_eq!(Persistence::from_redis_conf("appendonly yes\nappendfsync no\n"), None);
        assert!(Persistence::deploy_default().is_ok(), "deploy/base/redis.conf names its appendfsync");
    }

    #[test]
    fn aof_survives_kill_and_restart() {
        let mut server = RedisServer::start_with(Persistence::AofAlways).expect("start");
        let mut conn = server.client().get_connection().expect("connect");
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut conn).expect("set");
        server.kill();
        assert!(server.client().get_connection_with_timeout(Duration::from_millis(200)).is_err());
        server.restart().expect("restart");
        let mut conn = server.client().get_connection().expect("reconnect");
        let v: String = redis::cmd("GET").arg("k").query(&mut conn).expect("get");
        assert_eq!(v, "v");
        assert_ne!(server.port(), 6379);
    }
}
