#!/usr/bin/env python3
"""Validate Kubernetes objects: schemas and the deployment's own rules.

What it checks, for every object it is given:

* built-in kinds against the upstream Kubernetes OpenAPI schemas shipped by
  `kubernetes-validate`, strict (unknown fields are errors), for every
  version in ``--k8s-version`` (default: the oldest we support, 1.30, and
  the newest the package ships);
* KEDA kinds (ScaledObject, TriggerAuthentication) against the
  ``openAPIV3Schema`` of the CRDs in ``--crd-dir`` (default
  ``../shared/k8s-schemas`` beside the repository), made strict the way the
  API server prunes: an unknown field is an error, not a silent drop;
* kinds with no schema at all are errors (nothing passes unvalidated);
* the rules of this deployment (see ``policy_errors``): Pod Security
  `restricted` for every pod template, `$(VAR)` env references defined
  earlier, no Secret values, no RBAC wildcards, selectors and references
  that resolve, TLS on every Ingress host, resources on every container.

It does not render kustomize overlays or run yamllint: ``deploy_check.py``
does that and calls ``validate`` here. Usable alone, e.g. for the objects
the worker renders per session::

    worker render-objects | python3 deploy/check/validate_objects.py -
    python3 deploy/check/validate_objects.py DIR_OR_FILE...

Input: YAML (multi-document), a JSON object, a JSON array, or a `kind: List`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRD_DIR = REPO_ROOT.parent / "shared" / "k8s-schemas"
MIN_K8S_VERSION = "1.30.0"
NAMESPACES = {"session-manager", "workspaces"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "VolumeSnapshotClass"}
# Cluster-scoped kinds the deployment may bring: its namespaces, and the
# class of snapshot-mode backups (it grants nothing; a class only names the
# CSI driver and what deleting a snapshot does).
CLUSTER_SCOPED_ALLOWED = {"Namespace", "VolumeSnapshotClass"}
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
# Volume types the `restricted` Pod Security Standard allows.
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
# Pods created by other controllers that our NetworkPolicies select on purpose.
EXTERNAL_POD_LABELS = {"acme.cert-manager.io/http01-solver"}
# Components that talk to Redis (and workspaces) only: no Kubernetes role, no token.
TOKENLESS = {"session-api": "api", "session-gateway": "gateway"}
ENV_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class Obj:
    """One object and where it came from."""

    def __init__(self, data: dict[str, Any], source: str):
        self.data = data
        self.source = source

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "?"))

    @property
    def name(self) -> str:
        return str((self.data.get("metadata") or {}).get("name", "?"))

    @property
    def namespace(self) -> str | None:
        return (self.data.get("metadata") or {}).get("namespace")

    def ref(self) -> str:
        ns = self.namespace
        return f"{self.kind}/{ns}/{self.name}" if ns else f"{self.kind}/{self.name}"


# ---------------------------------------------------------------- loading


def _flatten(doc: Any, source: str) -> Iterator[Obj]:
    if doc is None:
        return
    if isinstance(doc, list):
        for item in doc:
            yield from _flatten(item, source)
    elif isinstance(doc, dict) and doc.get("kind") == "List" and "items" in doc:
        yield from _flatten(doc["items"], source)
    elif isinstance(doc, dict):
        yield Obj(doc, source)
    else:
        raise ValueError(f"{source}: not an object: {doc!r:.80}")


def load_text(text: str, source: str) -> list[Obj]:
    """Objects of a YAML stream or JSON document (object, array or List)."""
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            return list(_flatten(json.loads(text), source))
        except json.JSONDecodeError:
            pass  # YAML flow style; fall through
    return [o for doc in yaml.safe_load_all(text) for o in _flatten(doc, source)]


def load_paths(paths: Iterable[str]) -> list[Obj]:
    """Objects from files, directories (every *.yaml, *.yml, *.json) or `-`."""
    objs: list[Obj] = []
    for p in paths:
        if p == "-":
            objs += load_text(sys.stdin.read(), "<stdin>")
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.suffix in {".yaml", ".yml", ".json"} and f.is_file())
            if not files:
                raise ValueError(f"{p}: no .yaml/.yml/.json files")
        elif path.is_file():
            files = [path]
        else:
            raise ValueError(f"{p}: no such file or directory")
        for f in files:
            objs += load_text(f.read_text(), str(f))
    return objs


# ---------------------------------------------------------------- schemas


def _strictify(schema: Any) -> Any:
    """Reject unknown fields where the API server would prune them."""
    if isinstance(schema, dict):
        out = {k: _strictify(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strictify(s) for s in schema]
    return schema


def load_crd_schemas(crd_dir: Path) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> strict JSON schema, from CRD manifests."""
    schemas: dict[tuple[str, str], Any] = {}
    if not crd_dir.is_dir():
        raise ValueError(f"CRD directory {crd_dir} not found (expected ../shared/k8s-schemas beside the repo)")
    for f in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if not v.get("served", True):
                    continue
                schema = v["schema"]["openAPIV3Schema"]
                schemas[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = _strictify(schema)
    return schemas


def _jsonschema_errors(schema: Any, data: Any) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in err.path) or "<root>"
        out.append(f"{path}: {err.message}")
    return out


def schema_errors(obj: Obj, k8s_versions: list[str], crds: dict[tuple[str, str], Any]) -> list[str]:
    """Schema violations of one object (empty when valid)."""
    key = (str(obj.data.get("apiVersion")), obj.kind)
    if key in crds:
        return [f"CRD schema: {e}" for e in _jsonschema_errors(crds[key], obj.data)]
    import kubernetes_validate

    errors = []
    for version in k8s_versions:
        try:
            kubernetes_validate.validate(obj.data, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "<root>"
            errors.append(f"Kubernetes {version} schema: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"no schema for {key[0]} {key[1]} (Kubernetes {version}) nor a CRD in the CRD directory")
    return errors


# ---------------------------------------------------------------- policy


def _get(d: Any, path: Iterable[str]) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def pod_spec(obj: Obj) -> dict | None:
    path = POD_TEMPLATE_PATHS.get(obj.kind)
    return _get(obj.data, path) if path else None


def pod_labels(obj: Obj) -> dict:
    path = POD_TEMPLATE_PATHS.get(obj.kind)
    if not path:
        return {}
    if obj.kind == "Pod":
        return _get(obj.data, ("metadata", "labels")) or {}
    return _get(obj.data, path[:-1] + ("metadata", "labels")) or {}


def restricted_errors(spec: dict) -> list[str]:
    """Violations of the `restricted` Pod Security Standard in a pod spec."""
    errs = []
    psc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            errs.append(f"{flag} is not allowed")
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            errs.append(f"volume {v.get('name')}: type {sorted(kinds - RESTRICTED_VOLUME_TYPES)} not allowed")
    if psc.get("runAsUser") == 0:
        errs.append("pod runAsUser 0")
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    for c in containers:
        name = c.get("name", "?")
        csc = c.get("securityContext") or {}
        if csc.get("privileged"):
            errs.append(f"container {name}: privileged")
        if csc.get("allowPrivilegeEscalation") is not False:
            errs.append(f"container {name}: allowPrivilegeEscalation must be false")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            errs.append(f"container {name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            errs.append(f"container {name}: capabilities.add beyond NET_BIND_SERVICE")
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            errs.append(f"container {name}: runAsNonRoot must be true (pod or container)")
        if csc.get("runAsUser", psc.get("runAsUser")) == 0:
            errs.append(f"container {name}: runAsUser 0")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            errs.append(f"container {name}: seccompProfile must be RuntimeDefault or Localhost")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                errs.append(f"container {name}: hostPort")
    return errs


def env_order_errors(spec: dict) -> list[str]:
    """`$(VAR)` in env values must name a variable defined earlier in the list
    (otherwise Kubernetes leaves the text as is: e.g. a literal password
    placeholder in REDIS_URL)."""
    errs = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        seen: set[str] = set()
        for e in c.get("env") or []:
            for ref in ENV_REF.findall(str(e.get("value", ""))):
                if ref not in seen:
                    errs.append(f"container {c.get('name')}: env {e.get('name')} uses $({ref}) before it is defined")
            seen.add(e.get("name"))
        names = seen
        for field in ("command", "args"):
            for arg in c.get(field) or []:
                for ref in ENV_REF.findall(str(arg)):
                    if ref not in names:
                        errs.append(f"container {c.get('name')}: {field} uses $({ref}), not in env")
    return errs


def resources_errors(spec: dict) -> list[str]:
    errs = []
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    errs.append(f"container {c.get('name')}: resources.{kind}.{r} missing")
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        if "@" not in tag and (":" not in tag or tag.endswith(":latest")):
            errs.append(f"container {c.get('name')}: image {image!r} needs a pinned tag (not latest)")
    return errs


def worker_grace_errors(spec: dict) -> list[str]:
    """The worker's grace period must outlast its longest job (a delete: pod
    drain + backup), or SIGKILL interrupts jobs on every rollout."""
    env = {e.get("name"): e.get("value") for c in spec.get("containers") or [] for e in c.get("env") or []}
    grace = int(spec.get("terminationGracePeriodSeconds", 30))
    try:
        longest = max(
            int(env.get("READY_TIMEOUT_SECS") or 120),
            int(env.get("POD_GONE_TIMEOUT_SECS") or 120) + int(env.get("BACKUP_TIMEOUT_SECS") or 600),
        )
    except ValueError as e:
        return [f"worker timeout env is not a number: {e}"]
    if grace < longest + 60:
        return [f"terminationGracePeriodSeconds {grace} does not outlast the longest job ({longest} s + 60 s margin)"]
    return []


def _matches(selector: dict | None, labels: dict) -> bool:
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def policy_errors(obj: Obj, context: list[Obj]) -> list[str]:
    """The deployment's own rules for one object; `context` resolves references."""
    errs: list[str] = []
    d = obj.data
    kind = obj.kind
    if kind not in CLUSTER_SCOPED and obj.namespace not in NAMESPACES:
        errs.append(f"namespace {obj.namespace!r} is not one of {sorted(NAMESPACES)}")
    if kind in CLUSTER_SCOPED - CLUSTER_SCOPED_ALLOWED:
        errs.append(f"cluster-scoped {kind} is not part of this deployment")

    spec = pod_spec(obj)
    if spec is not None:
        errs += restricted_errors(spec)
        errs += env_order_errors(spec)
        # In `workspaces` the LimitRange supplies defaults; elsewhere every
        # container states its resources.
        errs += [e for e in resources_errors(spec) if obj.namespace != "workspaces" or "image" in e]
        sel = _get(d, ("spec", "selector", "matchLabels"))
        if kind in ("Deployment", "StatefulSet") and not _matches(sel, pod_labels(obj)):
            errs.append("spec.selector.matchLabels does not match the pod template labels")

    if kind == "Secret" and (d.get("data") or d.get("stringData")):
        errs.append("Secret with values: secrets are created by hand, never committed")
    if kind == "ConfigMap":
        for k, v in (d.get("data") or {}).items():
            for line in str(v).splitlines():
                if re.match(r"\s*(requirepass|masterauth)\s", line) or re.search(r"password\s*[=:]\s*\S", line, re.I):
                    errs.append(f"ConfigMap key {k} holds a password: use a Secret")

    if kind in ("Role", "ClusterRole"):
        for i, rule in enumerate(d.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in (rule.get(field) or []):
                    errs.append(f"rules[{i}].{field} has a wildcard")

    same_ns = [o for o in context if o.namespace == obj.namespace]
    pods_ns = [o for o in same_ns if pod_spec(o) is not None]
    if kind in ("Service", "PodDisruptionBudget"):
        sel = _get(d, ("spec", "selector")) if kind == "Service" else _get(d, ("spec", "selector", "matchLabels"))
        if pods_ns and not any(_matches(sel, pod_labels(o)) for o in pods_ns):
            errs.append(f"selector {sel} matches no pod template in {obj.namespace}")
    if kind == "NetworkPolicy":
        sel = _get(d, ("spec", "podSelector", "matchLabels"))
        if sel and pods_ns and not set(sel) & EXTERNAL_POD_LABELS and not any(_matches(sel, pod_labels(o)) for o in pods_ns):
            errs.append(f"podSelector {sel} matches no pod template in {obj.namespace}")
    if kind == "Ingress":
        tls_hosts = {h for t in _get(d, ("spec", "tls")) or [] for h in t.get("hosts") or []}
        for rule in _get(d, ("spec", "rules")) or []:
            if rule.get("host") not in tls_hosts:
                errs.append(f"host {rule.get('host')!r} has no TLS entry")
        services = {o.name: o for o in same_ns if o.kind == "Service"}
        for rule in _get(d, ("spec", "rules")) or []:
            for p in _get(rule, ("http", "paths")) or []:
                svc = _get(p, ("backend", "service", "name"))
                if services and svc not in services:
                    errs.append(f"backend service {svc!r} not found in {obj.namespace}")
    if kind == "ScaledObject":
        target = _get(d, ("spec", "scaleTargetRef", "name"))
        deps = [o for o in same_ns if o.kind == "Deployment"]
        if deps and target not in {o.name for o in deps}:
            errs.append(f"scaleTargetRef {target!r} not found in {obj.namespace}")
        auths = {o.name for o in same_ns if o.kind == "TriggerAuthentication"}
        for t in _get(d, ("spec", "triggers")) or []:
            meta = t.get("metadata") or {}
            if any(k in meta for k in ("password", "passwordFromEnv")):
                errs.append(f"trigger {t.get('name', t.get('type'))}: inline password; use authenticationRef")
            ref = _get(t, ("authenticationRef", "name"))
            if ref is None:
                errs.append(f"trigger {t.get('name', t.get('type'))}: no authenticationRef")
            elif auths and ref not in auths:
                errs.append(f"trigger authenticationRef {ref!r} not found in {obj.namespace}")
            if t.get("type") == "redis-streams" and "lagCount" in meta and "pendingEntriesCount" in meta:
                errs.append("redis-streams trigger with both lagCount and pendingEntriesCount: lagCount wins silently")
    if kind == "RoleBinding":
        for s in d.get("subjects") or []:
            if s.get("kind") == "ServiceAccount" and s.get("name") in TOKENLESS:
                errs.append(f"the {TOKENLESS[s['name']]} ServiceAccount must have no Kubernetes permissions")
    if kind == "Deployment" and obj.name == "session-worker":
        errs += worker_grace_errors(_get(d, ("spec", "template", "spec")) or {})
    if kind == "Deployment" and obj.name in TOKENLESS:
        if _get(d, ("spec", "template", "spec", "automountServiceAccountToken")) is not False:
            errs.append(f"the {TOKENLESS[obj.name]} pod must not mount a ServiceAccount token")
    return errs


# ---------------------------------------------------------------- driver


def default_k8s_versions() -> list[str]:
    import kubernetes_validate.utils as kv

    latest = kv.latest_version()
    return [MIN_K8S_VERSION] if latest == MIN_K8S_VERSION else [MIN_K8S_VERSION, latest]


def validate(
    objs: list[Obj],
    k8s_versions: list[str],
    crds: dict[tuple[str, str], Any],
    context: list[Obj] | None = None,
) -> list[str]:
    """Every problem of `objs`, one line each (empty when all is well)."""
    ctx = objs + (context or [])
    problems = []
    for o in objs:
        for e in schema_errors(o, k8s_versions, crds) + policy_errors(o, ctx):
            problems.append(f"{o.source}: {o.ref()}: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="files, directories or - (stdin)")
    ap.add_argument("--crd-dir", default=os.environ.get("K8S_SCHEMAS_DIR", str(DEFAULT_CRD_DIR)))
    ap.add_argument("--k8s-version", action="append", help="Kubernetes version(s) to validate against")
    ap.add_argument("--context", action="append", default=[], help="objects that references may resolve to")
    args = ap.parse_args(argv)
    try:
        objs = load_paths(args.paths)
        context = load_paths(args.context) if args.context else []
        crds = load_crd_schemas(Path(args.crd_dir))
    except (ValueError, yaml.YAMLError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    if not objs:
        print("ERROR no objects in input", file=sys.stderr)
        return 2
    versions = args.k8s_version or default_k8s_versions()
    problems = validate(objs, versions, crds, context)
    for p in problems:
        print(f"ERROR {p}")
    print(f"validated {len(objs)} objects against Kubernetes {', '.join(versions)} and CRDs (KEDA, CSI snapshots): "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
