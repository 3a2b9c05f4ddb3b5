#!/usr/bin/env python3
"""Compare a Role's rules with the Kubernetes calls a program really made.

    rbac_check.py ROLE_FILE_OR_RENDERED_YAML CALLS_FILE... [--role NAME]

Both ways:

* every recorded call is allowed by the Role (else the worker gets 403 in a
  real cluster), and
* every (verb, apiGroup, resource) the Role grants was used by some call
  (else the Role grants more than the worker needs).

Calls files hold one call per line, ``VERB GROUP RESOURCE[/SUBRESOURCE]``,
with RBAC verbs (get, list, watch, create, update, patch, delete,
deletecollection) and the core group written ``core`` (``""`` and ``-`` are
accepted too); extra fields after the third are ignored, so are blank lines
and ``#`` comments. The stand-in cluster writes them during the worker's
end-to-end test (``target/k8s-calls/``).

A recorded ``patch`` also justifies granting ``create`` on the same
resource: the worker patches only with server-side apply, and an apply that
creates a missing object is authorised as ``create`` as well
(k8s.io/apiserver endpoints/handlers/patch.go, createAuthorizerAttributes).
``--no-apply-implies-create`` turns that off. A recorder that can tell
apply from other patches may write the pseudo-verb ``apply``, which counts
as both ``patch`` and ``create``.

Exit status: 0 when both directions hold, 1 when not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable

import yaml

Triple = tuple[str, str, str]  # (verb, apiGroup, resource[/subresource])
CORE_SPELLINGS = {"core", '""', "''", "-", ""}
KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "apply"}


class InputError(Exception):
    """The Role or a calls file cannot be read."""


def _group(g: str) -> str:
    return "" if g in CORE_SPELLINGS else g


def _show(t: Triple) -> str:
    verb, group, resource = t
    return f"{verb} {group or 'core'} {resource}"


def parse_calls(lines: Iterable[str], source: str = "<calls>") -> set[Triple]:
    """Recorded calls as (verb, group, resource) triples."""
    calls: set[Triple] = set()
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            raise InputError(f"{source}:{n}: expected 'VERB GROUP RESOURCE', got {raw.strip()!r}")
        verb, group, resource = fields[0].lower(), _group(fields[1]), fields[2]
        if verb not in KNOWN_VERBS:
            raise InputError(f"{source}:{n}: unknown verb {verb!r}")
        calls.add((verb, group, resource))
    return calls


def load_role(path: Path, name: str | None) -> dict:
    """The Role named `name` (default: `session-worker`, or the only Role)."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{path}: {e}") from e
    items: list[dict] = []
    for d in docs:
        items += d.get("items", []) if d.get("kind") == "List" else [d]
    roles = [d for d in items if d.get("kind") in ("Role", "ClusterRole")]
    if name:
        roles = [r for r in roles if (r.get("metadata") or {}).get("name") == name]
    elif len(roles) > 1:
        roles = [r for r in roles if (r.get("metadata") or {}).get("name") == "session-worker"] or roles
    if len(roles) != 1:
        found = [(r.get("metadata") or {}).get("name") for r in roles]
        raise InputError(f"{path}: expected one Role{' named ' + name if name else ''}, found {found}")
    return roles[0]


def granted(role: dict) -> tuple[set[Triple], list[str]]:
    """Granted triples, and problems that make the Role uncheckable (wildcards)."""
    out: set[Triple] = set()
    problems = []
    for i, rule in enumerate(role.get("rules") or []):
        groups, resources, verbs = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("verbs") or []
        for field, values in (("apiGroups", groups), ("resources", resources), ("verbs", verbs)):
            if "*" in values:
                problems.append(f"rules[{i}].{field} has a wildcard: not least privilege, cannot be checked")
        if rule.get("nonResourceURLs"):
            problems.append(f"rules[{i}] grants nonResourceURLs: the worker uses none")
        for g in groups:
            for r in resources:
                for v in verbs:
                    out.add((v.lower(), g, r))
    return out, problems


def effective(calls: set[Triple], apply_implies_create: bool) -> tuple[set[Triple], set[Triple]]:
    """(needed, justified): what must be allowed, and what may be granted."""
    needed: set[Triple] = set()
    for verb, g, r in calls:
        if verb == "apply":
            needed |= {("patch", g, r), ("create", g, r)}
        else:
            needed.add((verb, g, r))
    justified = set(needed)
    if apply_implies_create:
        justified |= {("create", g, r) for (v, g, r) in needed if v == "patch"}
    return needed, justified


def check(role: dict, calls: set[Triple], apply_implies_create: bool = True) -> list[str]:
    """Every mismatch between the Role and the calls, one sentence each."""
    grants, problems = granted(role)
    needed, justified = effective(calls, apply_implies_create)
    for t in sorted(needed - grants):
        problems.append(f"call not allowed by the Role: {_show(t)}")
    for t in sorted(grants - justified):
        problems.append(f"granted but never used: {_show(t)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("role_file", help="a Role manifest or a rendered multi-document YAML")
    ap.add_argument("calls_files", nargs="+", help="recorded calls, 'VERB GROUP RESOURCE' per line")
    ap.add_argument("--role", help="Role name (default: session-worker, or the only Role)")
    ap.add_argument("--no-apply-implies-create", dest="apply_implies_create", action="store_false")
    args = ap.parse_args(argv)
    try:
        role = load_role(Path(args.role_file), args.role)
        calls: set[Triple] = set()
        for f in args.calls_files:
            try:
                text = Path(f).read_text()
            except OSError as e:
                raise InputError(f"{f}: {e}") from e
            calls |= parse_calls(text.splitlines(), f)
    except InputError as e:
        print(f"rbac-check: ERROR {e}", file=sys.stderr)
        return 2
    if not calls:
        print("rbac-check: ERROR the calls files hold no call", file=sys.stderr)
        return 2
    problems = check(role, calls, args.apply_implies_create)
    name = (role.get("metadata") or {}).get("name")
    for p in problems:
        print(f"rbac-check: ERROR Role {name}: {p}")
    print(f"rbac-check: Role {name} vs {len(calls)} distinct recorded calls from "
          f"{len(args.calls_files)} file(s): {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
