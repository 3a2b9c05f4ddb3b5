//! The restore Job of a session created with `restore_from`: pure builder
//! and the reason a failed restore gives.
//!
//! It runs once (no retry: a corrupt archive stays corrupt), before the
//! session's Deployment exists, with the backup PVC read-only at `/backup`
//! and the new session's PVC at `/app`. Its program ([`PROGRAM`]) first
//! checks the archive as a whole and touches nothing until every check
//! passed: the file exists, its size and SHA-256 equal the backup record's,
//! it opens as a zip whose every entry passes its CRC check, and every
//! entry name lies under `app/` (no absolute names, no `..`). Then it
//! empties `/app`, writes directories and files (checking each file's size
//! and CRC-32 as written), and creates symlinks last, *as symlinks* (the
//! target text the backup stored; never followed, so a link cannot make a
//! later entry land outside the volume). Any failure writes one line,
//! the reason, to the termination message and exits 1; [`failure_of`]
//! reads it back so the create fails with that reason.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proto_types::SessionId;
use proto_types::scripts::start::RestoreSource;

use super::backup::{CONTAINER, ToolJob};
use super::k8s_config::K8sConfig;
use super::names;

/// The Python program run by the restore container (see the module docs).
pub const PROGRAM: &str = r#"import hashlib, os, shutil, stat, sys, zipfile, zlib
def fail(why):
    with open("/dev/termination-log", "w") as f:
        f.write(why)
    sys.exit(why)
def unexpected(kind, value, tb):
    with open("/dev/termination-log", "w") as f:
        f.write("restore failed: %s: %s" % (kind.__name__, value))
    sys.__excepthook__(kind, value, tb)
sys.excepthook = unexpected
name = os.environ["RESTORE_FILE"]
want_size, want_sha = int(os.environ["RESTORE_SIZE_BYTES"]), os.environ["RESTORE_SHA256"]
if "/" in name or name.startswith("."):
    fail("archive name %r is not a file name" % name)
src = os.path.join("/backup", name)
if not os.path.isfile(src):
    fail("archive %s is not on the backup volume" % name)
size = os.path.getsize(src)
if size != want_size:
    fail("archive %s is %d bytes, the backup recorded %d" % (name, size, want_size))
h = hashlib.sha256()
with open(src, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != want_sha:
    fail("archive %s has sha256 %s, the backup recorded %s" % (name, h.hexdigest(), want_sha))
try:
    z = zipfile.ZipFile(src)
    bad = z.testzip()
except (zipfile.BadZipFile, OSError, EOFError) as e:
    fail("archive %s is not a readable zip: %s" % (name, e))
if bad is not None:
    fail("archive entry %s failed its CRC check" % bad)
entries = []
for info in z.infolist():
    n = info.filename.rstrip("/")
    parts = n.split("/")
    if n == "app":
        continue
    if parts[0] != "app" or ".." in parts or "" in parts or "\\" in n:
        fail("archive entry %r is outside app/" % info.filename)
    entries.append((info, "/app/" + "/".join(parts[1:])))
for n in os.listdir("/app"):
    p = os.path.join("/app", n)
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
    else:
        os.unlink(p)
links = []
for info, path in entries:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        links.append((info, path))
        continue
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if os.path.realpath(parent) != parent:
        fail("archive entry %r would be written through a symlink" % info.filename)
    if info.is_dir():
        os.makedirs(path, exist_ok=True)
    else:
        crc, n = 0, 0
        with z.open(info) as r, open(path, "wb") as w:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                crc, n = zlib.crc32(chunk, crc), n + len(chunk)
                w.write(chunk)
        if n != info.file_size or crc != info.CRC:
            fail("file %s restored as %d bytes crc %08x, the archive says %d bytes crc %08x"
                 % (path, n, crc, info.file_size, info.CRC))
    if mode & 0o7777:
        os.chmod(path, mode & 0o7777)
for info, path in links:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(z.read(info).decode("utf-8", "surrogateescape"), path)
print("restored", len(entries), "entries from", name)
"#;

/// The restore Job of session `id`, from `source`. One per session (not
/// per generation): a later job of the same session finds the same Job.
pub fn job(config: &K8sConfig, id: &SessionId, source: &RestoreSource) -> Job {
    let meta = ObjectMeta {
        name: Some(names::restore_job(id)),
        namespace: Some(config.namespace.clone()),
        labels: Some(names::component_labels(id, "restore")),
        annotations: Some(BTreeMap::from([(names::RESTORE_FROM_ANNOTATION.to_owned(), source.backup_id.clone())])),
        ..Default::default()
    };
    let tool = ToolJob {
        container: CONTAINER,
        program: PROGRAM,
        env: vec![
            ("RESTORE_FILE", source.location.clone()),
            ("RESTORE_SIZE_BYTES", source.size_bytes.to_string()),
            ("RESTORE_SHA256", source.sha256.clone()),
        ],
        data: Some((names::pvc(id), false)),
        backup_read_only: true,
        attempts: 1,
    };
    tool.build(config, meta)
}

/// Why a restore failed, from its pod's termination message; `None` when
/// no pod left one (the Job's own condition is the reason then).
pub fn failure_of(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
        .filter(|c| c.name == CONTAINER)
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            let m = t.message.as_deref()?.trim();
            (t.exit_code != 0 && !m.is_empty()).then(|| m.chars().take(400).collect())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> RestoreSource {
        RestoreSource {
            backup_id: "0fa6debc-g4".into(),
            kind: proto_types::BackupKind::Archive,
            location: "app-0fa6debc-20261201-101010.zip".into(),
            size_bytes: 5_243_012,
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn the_job_runs_once_writing_the_session_volume_from_a_read_only_backup() {
        let id = SessionId::parse("1a2b3c4d").expect("id");
        let j = job(&K8sConfig::default(), &id, &source());
        assert_eq!(j.metadata.name.as_deref(), Some("ws-1a2b3c4d-restore"));
        let spec = j.spec.expect("spec");
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.expect("pod");
        let c = &pod.containers[0];
        let env: Vec<(String, String)> =
            c.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
        assert!(env.contains(&("RESTORE_SIZE_BYTES".into(), "5243012".into())), "{env:?}");
        assert!(env.contains(&("RESTORE_FILE".into(), source().location)), "{env:?}");
        let mounts: Vec<(String, Option<bool>)> =
            c.volume_mounts.iter().flatten().map(|m| (m.mount_path.clone(), m.read_only)).collect();
        assert_eq!(mounts, [("/app".into(), Some(false)), ("/backup".into(), Some(true))]);
        let vols = pod.volumes.expect("volumes");
        assert_eq!(vols[0].persistent_volume_claim.as_ref().map(|p| p.claim_name.as_str()), Some("ws-1a2b3c4d-data"));
    }

    fn pod(exit_code: i32, message: Option<&str>) -> Pod {
        super::super::backup::tests::pod(CONTAINER, exit_code, message)
    }

    #[test]
    fn the_reason_is_the_failed_pods_message() {
        let why = "archive a.zip is 10 bytes, the backup recorded 20";
        assert_eq!(failure_of(&[pod(1, Some(why))]).as_deref(), Some(why));
        assert_eq!(failure_of(&[pod(1, None)]), None);
        assert_eq!(failure_of(&[pod(0, Some("restored 3 entries"))]), None);
        assert_eq!(failure_of(&[]), None);
    }
}
