"""charts/llmops: lint, schema, valid objects for 1.29 and the newest Kubernetes, and what they say."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from llmops.operator_cmd import run_cmd
from llmops_core.config import OperatorConfig
from llmops_operator.controller import children
from llmops_operator.render import pods
from tests.install.chart import CHART, NAMESPACE, documents, helm_template

NEWEST = latest_version()
# Values that exercise every switch away from its default.
NON_DEFAULT = [
    "--set-json",
    'watchNamespaces=["team-a","team-b"]',
    "--set",
    "crds.keep=false,service.enabled=false,serviceAccount.name=trainer-bot,fullnameOverride=ml-ops",
    "--set",
    "image.digest=sha256:" + "a" * 64 + ",config.storageClass=fsx-lustre,config.trainerCpu=8,logFormat=plain",
    "--set-json",
    'serviceAccount.annotations={"eks.amazonaws.com/role-arn":"arn:aws:iam::1:role/x"}',
    "--set-json",
    'extraEnv=[{"name":"LLMOPS_OPERATOR_RESYNC_SECONDS","value":"120"}]',
    "--set-json",
    'tolerations=[{"key":"ops","operator":"Exists","effect":"NoSchedule"}]',
    "--set-json",
    'imagePullSecrets=[{"name":"registry"}]',
]
VALUE_SETS = {"default": [], "non-default": NON_DEFAULT}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = by_kind(docs, kind)
    return doc


def test_lint_strict_is_clean(helm):
    for args in VALUE_SETS.values():
        got = subprocess.run(
            [str(helm), "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert got.returncode == 0, got.stdout + got.stderr
        assert "[WARNING]" not in got.stdout and "[ERROR]" not in got.stdout, got.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
@pytest.mark.parametrize("kube", ["1.29.0", NEWEST])
def test_every_object_is_valid_kubernetes(helm, values, kube):
    args = list(VALUE_SETS[values])
    if kube.startswith("1.29"):
        args += ["--set", "admissionPolicy.enabled=false"]
    docs = documents(helm_template(*args, kube_version=kube))
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole"} <= {d["kind"] for d in docs}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {kube}: {e.message} at {list(e.path)}")


def test_the_admission_policy_refuses_1_29_with_a_clear_message(helm):
    out = helm_template(kube_version="1.29.0", check=False)
    assert "admissionPolicy.enabled needs Kubernetes 1.30 or newer" in out
    assert "kind: ValidatingAdmissionPolicy" in helm_template(kube_version="1.30.0")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("config.trainerMemory=lots", "/config/trainerMemory"),
        ("config.imagePullPolicy=Sometimes", "/config/imagePullPolicy"),
        ("watchNamespaces[0]=Team_A", "/watchNamespaces/0"),
        ("image.digest=latest", "/image/digest"),
        ("logFormat=xml", "/logFormat"),
        ("healthPort=80", "/healthPort"),
        ("crds.instal=true", "/crds"),
        ("replicas=2", "replicas"),
    ],
)
def test_bad_values_fail_at_install_naming_the_field(helm, value, field):
    out = helm_template("--set", value, check=False)
    assert "values don't meet the specifications of the schema" in out, out
    assert field in out, out


def test_every_value_is_documented():
    """Every key of values.yaml has a comment right above it, or is a group whose keys all have one
    (a documented key's own sub-keys, such as resources.requests, are covered by its comment)."""
    documented_at: list[int] = []  # indents of documented ancestors
    undocumented = []
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        key = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if key:
            indent = len(key.group(1))
            documented_at = [i for i in documented_at if i < indent]
            if previous.startswith("#"):
                documented_at.append(indent)
            elif not documented_at and not line.rstrip().endswith(":"):
                undocumented.append(key.group(2))
        if line.strip():
            previous = line.strip()
    assert not undocumented, undocumented
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]) == set(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_operator_config_values_map_onto_the_operator_config():
    """Each `config` value is one OperatorConfig field, defaulting to the operator's own default, so
    the values file documents what the operator really does."""
    config = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    docs = documents(helm_template())
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert OperatorConfig.load(environ=env) == OperatorConfig()
    assert len(config) == len(OperatorConfig.model_fields)
    custom = documents(
        helm_template(
            "--set",
            "config.storageClass=fsx-lustre,config.serverMemory=16Gi",
            "--set-json",
            'config.allowedImages=["registry.example/ml/*","ghcr.io/llmops-dev/*"]',
        )
    )
    (container,) = one(custom, "Deployment")["spec"]["template"]["spec"]["containers"]
    loaded = OperatorConfig.load(environ={e["name"]: e["value"] for e in container["env"]})
    assert (loaded.storage_class, loaded.server_memory) == ("fsx-lustre", "16Gi")
    assert loaded.allowed_images == ["registry.example/ml/*", "ghcr.io/llmops-dev/*"]
    assert loaded.allowed_service_accounts == []


@pytest.mark.parametrize("values", VALUE_SETS, ids=str)
def test_deployment_is_one_restricted_replica_probed_on_kopf_liveness(helm, values):
    docs = documents(helm_template(*VALUE_SETS[values]))
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"] == "64Mi"
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    # the arguments are what `llmops operator run` accepts, and the probe hits the liveness URL
    params = run_cmd.make_context("run", list(c["args"])).params
    port = next(p for p in c["ports"] if p["name"] == "health")["containerPort"]
    assert params["liveness"] == f"http://0.0.0.0:{port}{c['livenessProbe']['httpGet']['path']}"
    assert c["livenessProbe"]["httpGet"]["port"] == "health"
    sa = pod["serviceAccountName"]
    if values == "default":
        assert params["all_namespaces"] and c["image"] == "ghcr.io/llmops-dev/llmops-operator:0.1.0"
        assert sa == "llmops-operator" and one(docs, "ServiceAccount")["metadata"]["name"] == sa
    else:
        assert params["namespaces"] == ("team-a", "team-b") and not params["all_namespaces"]
        assert c["image"].endswith("@sha256:" + "a" * 64) and sa == "trainer-bot"


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (verb, group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_namespaced_mode_has_roles_per_namespace_and_no_cluster_writes(helm):
    cluster = documents(helm_template())
    namespaced = documents(helm_template("--set-json", 'watchNamespaces=["team-a","team-b"]'))
    everything = rules_of(one(cluster, "ClusterRole"))
    cluster_part = rules_of(one(namespaced, "ClusterRole"))
    # reads only: CRDs and namespace names (kopf's discovery)
    assert cluster_part == {
        (verb, group, resource)
        for verb in ("list", "watch")
        for group, resource in (("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces"))
    }
    roles = by_kind(namespaced, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = by_kind(namespaced, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": "llmops-operator", "namespace": NAMESPACE}
        ]
    # the same rights, writes only where it watches
    assert cluster_part | rules_of(roles[0]) == everything


def test_rbac_allows_owner_references_that_block_deletion():
    """children.owner_reference sets blockOwnerDeletion, which OwnerReferencesPermissionEnforcement
    allows only to who may update the owner's finalizers."""
    owner = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "a", "uid": "u"},
    }
    assert children.owner_reference(owner)["blockOwnerDeletion"] is True
    rules = rules_of(one(documents(helm_template()), "ClusterRole"))
    for plural in ("trainingjobs", "inferenceendpoints"):
        assert ("update", "llmops.dev", f"{plural}/finalizers") in rules


def test_no_wildcards_no_secrets_and_pods_read_only():
    rules = rules_of(one(documents(helm_template()), "ClusterRole"))
    assert not [r for r in rules if "*" in r]
    assert not [r for r in rules if r[2] in ("secrets", "nodes", "pods/exec", "pods/log")]
    assert {v for v, _, r in rules if r == "pods"} == {"list", "watch"}


def test_admission_policy_guards_every_kind_the_operator_writes():
    docs = documents(helm_template())
    policy = one(docs, "ValidatingAdmissionPolicy")
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    (condition,) = policy["spec"]["matchConditions"]
    assert (
        condition["expression"]
        == f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:llmops-operator"'
    )
    guarded = {
        (group, resource)
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    }
    writes = {
        (g, r)
        for v, g, r in rules_of(one(docs, "ClusterRole"))
        if v in ("create", "patch", "update", "delete") and "/" not in r
    }
    # kopf's Events and our own resources (kopf's annotations, status) are the only unguarded writes
    assert writes - guarded == {
        ("", "events"),
        ("llmops.dev", "trainingjobs"),
        ("llmops.dev", "inferenceendpoints"),
    }
    # the label it requires is the one the renderer and the controller put on every child
    label = policy["spec"]["variables"][0]["expression"].strip("'")
    assert pods.labels("TrainingJob", "x", "a", "c")[label] == "llmops-operator"
    assert children.MANAGED_BY[label] == "llmops-operator"
    assert all("'llmops-operator'" in v["expression"] for v in policy["spec"]["validations"])


def test_admission_policy_can_be_disabled():
    docs = documents(helm_template("--set", "admissionPolicy.enabled=false"))
    assert not by_kind(docs, "ValidatingAdmissionPolicy") and not by_kind(
        docs, "ValidatingAdmissionPolicyBinding"
    )


def test_crds_are_templated_behind_install_and_keep():
    crds = by_kind(documents(helm_template()), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "inferenceendpoints.llmops.dev",
        "trainingjobs.llmops.dev",
    ]
    assert all(c["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"} for c in crds)
    dropped = by_kind(documents(helm_template("--set", "crds.keep=false")), "CustomResourceDefinition")
    assert dropped and all("annotations" not in c["metadata"] for c in dropped)
    assert not by_kind(documents(helm_template("--set", "crds.install=false")), "CustomResourceDefinition")


def test_helm_test_hook_checks_the_health_endpoint():
    docs = documents(helm_template())
    (hook,) = [d for d in by_kind(docs, "Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    service = one(docs, "Service")
    url = hook["spec"]["containers"][0]["command"][-1]
    port = service["spec"]["ports"][0]["port"]
    assert url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/healthz"
    assert hook["spec"]["securityContext"]["runAsNonRoot"] is True
    assert not by_kind(documents(helm_template("--set", "service.enabled=false")), "Pod")


def test_notes_tell_the_next_step(helm, tmp_path):
    got = subprocess.run(
        [str(helm), "install", "llmops", str(CHART), "-n", NAMESPACE, "--dry-run=client"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    notes = got.stdout.split("NOTES:", 1)[1]
    assert "kubectl get llmops -n default -w" in notes
    assert "rollout status deployment/llmops-operator" in notes and "helm test llmops" in notes
