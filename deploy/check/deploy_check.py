#!/usr/bin/env python3
"""`make deploy-check`: render, lint and validate everything under deploy/.

Steps, each reported on one line, all run even when one fails:

1. yamllint on deploy/ (config deploy/.yamllint);
2. hadolint on api/Dockerfile, api/Dockerfile.gateway and worker/Dockerfile;
3. every overlay in deploy/overlays/ rendered with `kubectl kustomize`
   (written to target/deploy-check/<overlay>.yaml) and validated by
   validate_objects.py (Kubernetes schemas, KEDA CRDs, the deployment's
   rules);
4. extra objects given with --objects (files, directories or `-`), e.g. the
   per-session objects `worker render-objects` prints, validated the same
   way with the prod render as context for references;
5. the RBAC check: the worker Role of every overlay against the calls
   recorded by the stand-in cluster (files in $RBAC_CALLS_DIR, default
   target/k8s-calls/). With no recording: skipped with a note, or an error
   when RBAC_CALLS_REQUIRED=1.

Offline: tools come from the venv deploy-check.sh prepared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rbac_check  # noqa: E402
import validate_objects as vo  # noqa: E402

ROOT = HERE.parents[1]
DEPLOY = ROOT / "deploy"
OUT = ROOT / "target" / "deploy-check"
DOCKERFILES = [ROOT / "api" / "Dockerfile", ROOT / "api" / "Dockerfile.gateway", ROOT / "worker" / "Dockerfile"]


def tool(name: str) -> str | None:
    """A tool from this interpreter's venv first, then PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def run(cmd: list[str]) -> tuple[int, str]:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def ok(self, step: str, msg: str) -> None:
        print(f"deploy-check: ok   {step}: {msg}")

    def fail(self, step: str, msg: str, details: str = "") -> None:
        self.failed.append(step)
        print(f"deploy-check: FAIL {step}: {msg}")
        if details:
            print("\n".join("    " + line for line in details.splitlines()))

    def note(self, step: str, msg: str) -> None:
        print(f"deploy-check: skip {step}: {msg}")


def yamllint(rep: Report) -> None:
    exe = tool("yamllint")
    if not exe:
        return rep.fail("yamllint", "yamllint not installed (run deploy/check/deploy-check.sh)")
    code, out = run([exe, "-c", str(DEPLOY / ".yamllint"), "--strict", "deploy/"])
    if code:
        rep.fail("yamllint", "deploy/ has lint errors", out)
    else:
        rep.ok("yamllint", "deploy/ clean")


def hadolint(rep: Report) -> None:
    present = [d for d in DOCKERFILES if d.exists()]
    missing = [str(d.relative_to(ROOT)) for d in DOCKERFILES if not d.exists()]
    if missing:
        rep.fail("hadolint", f"missing {', '.join(missing)}")
    exe = tool("hadolint")
    if not exe:
        return rep.fail("hadolint", "hadolint not installed (run deploy/check/deploy-check.sh)")
    if present:
        code, out = run([exe, "--failure-threshold", "warning", *map(str, present)])
        if code:
            rep.fail("hadolint", "Dockerfile findings", out)
        else:
            rep.ok("hadolint", ", ".join(str(d.relative_to(ROOT)) for d in present))


def render(rep: Report) -> dict[str, Path]:
    exe = tool("kubectl")
    if not exe:
        rep.fail("render", "kubectl not installed (run deploy/check/deploy-check.sh)")
        return {}
    OUT.mkdir(parents=True, exist_ok=True)
    rendered = {}
    overlays = sorted(p for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
    if not overlays:
        rep.fail("render", "no overlay in deploy/overlays")
    for overlay in overlays:
        code, out = run([exe, "kustomize", str(overlay.relative_to(ROOT))])
        if code:
            rep.fail(f"render {overlay.name}", "kubectl kustomize failed", out)
            continue
        path = OUT / f"{overlay.name}.yaml"
        path.write_text(out + "\n")
        rendered[overlay.name] = path
    return rendered


def validate(rep: Report, step: str, paths: list[str], context: list[vo.Obj], crds, versions) -> None:
    try:
        objs = vo.load_paths(paths)
    except Exception as e:  # noqa: BLE001 - any unreadable input is a failure to report
        return rep.fail(step, f"cannot read: {e}")
    if not objs:
        return rep.fail(step, "no objects")
    problems = vo.validate(objs, versions, crds, context)
    if problems:
        rep.fail(step, f"{len(problems)} problem(s) in {len(objs)} objects", "\n".join(problems))
    else:
        kinds = sorted({o.kind for o in objs})
        rep.ok(step, f"{len(objs)} objects valid against Kubernetes {', '.join(versions)} + CRDs (KEDA, CSI snapshots) "
                     f"({', '.join(kinds)})")


def rbac(rep: Report, rendered: dict[str, Path]) -> None:
    calls_dir = Path(os.environ.get("RBAC_CALLS_DIR", ROOT / "target" / "k8s-calls"))
    files = sorted(f for f in calls_dir.glob("*") if f.is_file()) if calls_dir.is_dir() else []
    if not files:
        msg = (f"no recorded Kubernetes calls in {calls_dir} (the worker's end-to-end test against the "
               "stand-in cluster writes them: run `cargo test -p worker` first)")
        if os.environ.get("RBAC_CALLS_REQUIRED") == "1":
            return rep.fail("rbac", msg)
        return rep.note("rbac", msg)
    for name, path in rendered.items():
        out_lines: list[str] = []
        try:
            role = rbac_check.load_role(path, "session-worker")
            calls: set = set()
            for f in files:
                calls |= rbac_check.parse_calls(f.read_text().splitlines(), str(f))
        except rbac_check.InputError as e:
            rep.fail(f"rbac {name}", str(e))
            continue
        problems = rbac_check.check(role, calls)
        out_lines += problems
        if problems:
            rep.fail(f"rbac {name}", "Role session-worker does not match the recorded calls", "\n".join(out_lines))
        else:
            rep.ok(f"rbac {name}", f"Role session-worker grants exactly the {len(calls)} distinct calls "
                                   f"recorded in {len(files)} file(s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", action="append", default=[],
                    help="extra objects to validate (file, directory or -), e.g. `worker render-objects` output")
    ap.add_argument("--crd-dir", default=os.environ.get("K8S_SCHEMAS_DIR", str(vo.DEFAULT_CRD_DIR)))
    args = ap.parse_args(argv)

    rep = Report()
    try:
        crds = vo.load_crd_schemas(Path(args.crd_dir))
    except ValueError as e:
        rep.fail("crds", str(e))
        crds = {}
    versions = vo.default_k8s_versions()

    yamllint(rep)
    hadolint(rep)
    rendered = render(rep)
    contexts: dict[str, list[vo.Obj]] = {}
    for name, path in rendered.items():
        contexts[name] = vo.load_paths([str(path)])
        validate(rep, f"validate {name}", [str(path)], [], crds, versions)
    for extra in args.objects:
        validate(rep, f"validate {extra}", [extra], contexts.get("prod", []), crds, versions)
    rbac(rep, rendered)

    if rep.failed:
        print(f"deploy-check: FAILED ({', '.join(rep.failed)})")
        return 1
    print("deploy-check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
