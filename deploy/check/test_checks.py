#!/usr/bin/env python3
"""Unit tests of the deploy checkers themselves (rbac_check, validate_objects).

Fast and offline: `python3 -m unittest discover -s deploy/check -p 'test_*.py'`.
The schema tests need `kubernetes-validate` and the KEDA CRDs in
../shared/k8s-schemas (what `make deploy-check` installs and expects).
"""

from __future__ import annotations

import copy
import io
import sys
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rbac_check  # noqa: E402
import validate_objects as vo  # noqa: E402

FIX = HERE / "fixtures"


def run_rbac(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = rbac_check.main([str(a) for a in args])
    return code, out.getvalue()


class RbacCheckTest(unittest.TestCase):
    def test_exact_calls_pass(self):
        code, out = run_rbac(FIX / "role.yaml", FIX / "calls-exact.txt")
        self.assertEqual(code, 0, out)
        self.assertIn("OK", out)

    def test_call_not_allowed_is_reported(self):
        code, out = run_rbac(FIX / "role.yaml", FIX / "calls-missing.txt")
        self.assertEqual(code, 1)
        self.assertIn("call not allowed by the Role: delete apps deployments", out)
        self.assertIn("call not allowed by the Role: get apps deployments/scale", out)

    def test_unused_grant_is_reported(self):
        code, out = run_rbac(FIX / "role.yaml", FIX / "calls-partial.txt")
        self.assertEqual(code, 1)
        self.assertIn("granted but never used: delete core services", out)
        self.assertIn("granted but never used: list core pods", out)
        # create is justified by the server-side-apply patches.
        self.assertNotIn("never used: create", out)

    def test_union_of_several_files(self):
        code, out = run_rbac(FIX / "role.yaml", FIX / "calls-partial.txt", FIX / "calls-exact.txt")
        self.assertEqual(code, 0, out)

    def test_create_needs_a_patch_unless_disabled(self):
        code, out = run_rbac(FIX / "role.yaml", FIX / "calls-exact.txt", "--no-apply-implies-create")
        self.assertEqual(code, 1)
        self.assertIn("granted but never used: create apps deployments", out)

    def test_apply_pseudo_verb_needs_patch_and_create(self):
        role = rbac_check.load_role(FIX / "role.yaml", None)
        calls = rbac_check.parse_calls(["apply batch jobs"])
        problems = rbac_check.check(role, calls)
        self.assertIn("call not allowed by the Role: create batch jobs", problems)
        self.assertIn("call not allowed by the Role: patch batch jobs", problems)

    def test_wildcards_are_rejected(self):
        role = {"kind": "Role", "rules": [{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["*"]}]}
        problems = rbac_check.check(role, {("list", "", "pods")})
        self.assertTrue(any("wildcard" in p for p in problems), problems)

    def test_core_group_spellings(self):
        calls = rbac_check.parse_calls(['get core pods', 'get "" pods', "get - pods  extra fields", "# c", ""])
        self.assertEqual(calls, {("get", "", "pods")})

    def test_bad_lines_are_input_errors(self):
        with self.assertRaises(rbac_check.InputError):
            rbac_check.parse_calls(["get pods"])
        with self.assertRaises(rbac_check.InputError):
            rbac_check.parse_calls(["fetch core pods"])
        code, _ = run_rbac(FIX / "role.yaml", FIX / "does-not-exist.txt")
        self.assertEqual(code, 2)

    def test_role_is_found_in_rendered_overlay_shape(self):
        role = rbac_check.load_role(FIX / "role.yaml", "session-worker")
        self.assertEqual(role["kind"], "Role")
        with self.assertRaises(rbac_check.InputError):
            rbac_check.load_role(FIX / "role.yaml", "nope")


def _deployment() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ws-abc", "namespace": "workspaces"},
        "spec": {
            "selector": {"matchLabels": {"session-uuid": "abc"}},
            "template": {
                "metadata": {"labels": {"session-uuid": "abc"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "c",
                            "image": "codercom/code-server:4.96.4",
                            "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y"}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _scaled_object() -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "ws-abc", "namespace": "workspaces"},
        "spec": {
            "scaleTargetRef": {"name": "ws-abc"},
            "minReplicaCount": 0,
            "maxReplicaCount": 1,
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {"address": "redis:6379", "listName": "{sm}:demand:abc", "listLength": "1"},
                    "authenticationRef": {"name": "workspace-redis"},
                }
            ],
        },
    }


class PolicyTest(unittest.TestCase):
    def errors(self, *objs: dict) -> list[str]:
        wrapped = [vo.Obj(o, "test") for o in objs]
        return [e for o in wrapped for e in vo.policy_errors(o, wrapped)]

    def test_compliant_workspace_passes(self):
        self.assertEqual(self.errors(_deployment()), [])

    def test_restricted_violations(self):
        d = _deployment()
        spec = d["spec"]["template"]["spec"]
        del spec["securityContext"]["runAsNonRoot"]
        spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        spec["volumes"] = [{"name": "h", "hostPath": {"path": "/"}}]
        errs = self.errors(d)
        self.assertTrue(any("runAsNonRoot" in e for e in errs), errs)
        self.assertTrue(any("allowPrivilegeEscalation" in e for e in errs), errs)
        self.assertTrue(any("hostPath" in e for e in errs), errs)

    def test_env_reference_before_definition(self):
        d = _deployment()
        env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        env.reverse()
        errs = self.errors(d)
        self.assertTrue(any("uses $(A) before it is defined" in e for e in errs), errs)

    def test_secret_values_and_config_passwords(self):
        errs = self.errors(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "workspaces"},
             "stringData": {"password": "x"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "workspaces"},
             "data": {"redis.conf": "appendonly yes\nrequirepass hunter2\n"}},
        )
        self.assertTrue(any("Secret with values" in e for e in errs), errs)
        self.assertTrue(any("holds a password" in e for e in errs), errs)

    def test_scaled_object_references(self):
        so = _scaled_object()
        auth = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
                "metadata": {"name": "workspace-redis", "namespace": "workspaces"}}
        self.assertEqual(self.errors(_deployment(), so, auth), [])
        so["spec"]["scaleTargetRef"]["name"] = "other"
        so["spec"]["triggers"][0]["metadata"]["password"] = "x"
        errs = self.errors(_deployment(), so, auth)
        self.assertTrue(any("scaleTargetRef 'other'" in e for e in errs), errs)
        self.assertTrue(any("inline password" in e for e in errs), errs)

    def test_foreign_namespace_and_latest_image(self):
        d = _deployment()
        d["metadata"]["namespace"] = "default"
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "alpine"
        errs = self.errors(d)
        self.assertTrue(any("namespace 'default'" in e for e in errs), errs)
        self.assertTrue(any("pinned tag" in e for e in errs), errs)


    def test_only_namespaces_and_the_snapshot_class_may_be_cluster_scoped(self):
        vsc = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
               "metadata": {"name": "workspace-snapshots"}, "driver": "pd.csi.storage.gke.io",
               "deletionPolicy": "Delete"}
        self.assertEqual(self.errors(vsc), [])
        crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "x"}}
        errs = self.errors(crb)
        self.assertTrue(any("cluster-scoped ClusterRoleBinding" in e for e in errs), errs)

    def test_api_and_gateway_get_no_kubernetes_role_nor_token(self):
        for name in ("session-api", "session-gateway"):
            d = _deployment()
            d["metadata"] = {"name": name, "namespace": "session-manager"}
            binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": "b", "namespace": "session-manager"},
                       "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "session-manager"}]}
            errs = self.errors(d, binding)
            self.assertTrue(any("must not mount a ServiceAccount token" in e for e in errs), errs)
            self.assertTrue(any("must have no Kubernetes permissions" in e for e in errs), errs)
            d["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
            self.assertFalse(any("token" in e for e in self.errors(d)), name)

    def test_worker_grace_must_outlast_longest_job(self):
        worker = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "session-worker", "namespace": "session-manager"},
                  "spec": {"template": {"spec": {"terminationGracePeriodSeconds": 600, "containers": [
                      {"name": "w", "env": [{"name": "POD_GONE_TIMEOUT_SECS", "value": "120"},
                                            {"name": "BACKUP_TIMEOUT_SECS", "value": "600"}]}]}}}}
        self.assertTrue(any("does not outlast" in e for e in vo.worker_grace_errors(worker["spec"]["template"]["spec"])))
        worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 900
        self.assertEqual(vo.worker_grace_errors(worker["spec"]["template"]["spec"]), [])


class SchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crds = vo.load_crd_schemas(vo.DEFAULT_CRD_DIR)

    def test_valid_objects_pass(self):
        for o in (_deployment(), _scaled_object()):
            self.assertEqual(vo.schema_errors(vo.Obj(o, "t"), ["1.30.0"], self.crds), [])

    def test_unknown_fields_fail(self):
        d = _deployment()
        d["spec"]["replica"] = 1
        so = _scaled_object()
        so["spec"]["minReplicas"] = 0
        self.assertTrue(vo.schema_errors(vo.Obj(d, "t"), ["1.30.0"], self.crds))
        errs = vo.schema_errors(vo.Obj(so, "t"), ["1.30.0"], self.crds)
        self.assertTrue(any("minReplicas" in e for e in errs), errs)

    def test_wrong_types_fail(self):
        so = copy.deepcopy(_scaled_object())
        so["spec"]["maxReplicaCount"] = "one"
        self.assertTrue(vo.schema_errors(vo.Obj(so, "t"), ["1.30.0"], self.crds))

    def test_snapshot_kinds_are_checked_against_their_crds(self):
        vs = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
              "metadata": {"name": "s", "namespace": "workspaces"},
              "spec": {"source": {"persistentVolumeClaimName": "ws-x-data"},
                       "volumeSnapshotClassName": "workspace-snapshots"}}
        self.assertEqual(vo.schema_errors(vo.Obj(vs, "t"), ["1.30.0"], self.crds), [])
        del vs["spec"]["source"]
        self.assertTrue(vo.schema_errors(vo.Obj(vs, "t"), ["1.30.0"], self.crds))
        vsc = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
               "metadata": {"name": "c"}, "driver": "pd.csi.storage.gke.io", "deletionPolicy": "Keep"}
        errs = vo.schema_errors(vo.Obj(vsc, "t"), ["1.30.0"], self.crds)
        self.assertTrue(any("deletionPolicy" in e for e in errs), errs)

    def test_kind_without_schema_fails(self):
        obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "workspaces"}}
        errs = vo.schema_errors(vo.Obj(obj, "t"), ["1.30.0"], self.crds)
        self.assertTrue(any("no schema" in e for e in errs), errs)

    def test_loads_json_list_and_yaml_stream(self):
        objs = vo.load_text('{"kind": "List", "items": [{"kind": "A"}, {"kind": "B"}]}', "j")
        self.assertEqual([o.kind for o in objs], ["A", "B"])
        objs = vo.load_text("kind: A\n---\n---\nkind: B\n", "y")
        self.assertEqual([o.kind for o in objs], ["A", "B"])
        objs = vo.load_text('[{"kind": "A"}]', "a")
        self.assertEqual([o.kind for o in objs], ["A"])


if __name__ == "__main__":
    unittest.main()
