"""Installing on a real API server: ``kubectl apply --server-side -f manifests/install.yaml``, then
``helm install`` (taking over what it applied), ``helm upgrade``, ``helm test`` and ``helm uninstall``;
the admission policy refusing the operator's token outside its own objects; the operator reconciling
an example with exactly the chart's rights.

Runs with ``pytest tests/install --e2e``: on the simulated cluster (started, or reused, as for
tests/e2e), or with ``LLMOPS_E2E_CLUSTER=current`` on the current kubeconfig's cluster (kind). What the
test applies from install.yaml it deletes again, unless it was there before; the Helm release is its
own (``llmops-e2e`` in namespace ``llmops-e2e``). On the simulated cluster pods never run, so the
operator runs here as a process logged in with its ServiceAccount's token, and the ``helm test`` pod
is completed through the simulated kubelet; on kind both are real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.install.chart import CHART, INSTALL, NAMESPACE, ROOT, documents
from tests.install.tools import find

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
NAME = "llmops-operator"  # install.yaml's, in NAMESPACE
SA = f"system:serviceaccount:{NAMESPACE}:{NAME}"
HELM_RELEASE = HELM_NS = "llmops-e2e"
HELM_NAME = f"{HELM_RELEASE}-operator"
HELM_SA = f"system:serviceaccount:{HELM_NS}:{HELM_NAME}"
MANAGED = {"app.kubernetes.io/managed-by": "llmops-operator"}
EXIT_CODE = "llmops.dev/simulated-exit-code"  # the simulated kubelet completes a pod so annotated


def run(tool: str, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    got = subprocess.run([str(find(tool)), *args], capture_output=True, text=True, input=input, check=False)
    if check and got.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)}: {got.stderr.strip() or got.stdout.strip()}")
    return got


def kubectl(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return run("kubectl", *args, check=check, input=input)


def get(*args: str) -> dict[str, Any] | None:
    got = kubectl("get", *args, "-o", "json", check=False)
    if got.returncode != 0:
        assert "NotFound" in got.stderr, got.stderr
        return None
    return json.loads(got.stdout)


def wait(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def simulated() -> bool:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return bool(nodes) and all(
        (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake" for n in nodes
    )


def configmap(name: str, namespace: str, labels: dict[str, str] | None = None) -> str:
    meta = {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})}
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "1"}})


@pytest.fixture(scope="module")
def cluster(kube_cluster) -> None:
    got = kubectl("get", "--raw", "/readyz", check=False)
    assert got.returncode == 0, f"no reachable cluster in the current kubeconfig: {got.stderr.strip()}"
    # CRDs a previous run's `helm uninstall` kept are Helm's: take them back, as a fresh cluster starts
    crd = get("crd", "trainingjobs.llmops.dev")
    if crd and "meta.helm.sh/release-name" in (crd["metadata"].get("annotations") or {}):
        crds = [d for d in documents(INSTALL.read_text()) if d["kind"] == "CustomResourceDefinition"]
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(crds))


def exists(doc: dict[str, Any]) -> bool:
    ns = doc["metadata"].get("namespace")
    return get(doc["kind"].lower(), *(["-n", ns] if ns else []), doc["metadata"]["name"]) is not None


@pytest.fixture
def team() -> Iterator[str]:
    ns = f"llmops-install-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false")


def policy_active(namespace: str, sa: str) -> bool:
    """The binding takes effect a moment after it is created: probe with a server-side dry run."""
    got = kubectl(
        f"--as={sa}",
        "create",
        "--dry-run=server",
        "-f",
        "-",
        check=False,
        input=configmap("probe", namespace),
    )
    return got.returncode != 0 and "ValidatingAdmissionPolicy" in got.stderr


def test_install_yaml_applies_server_side_and_confines_the_operator(cluster, team):
    docs = documents(INSTALL.read_text())
    created = [d for d in docs if d["kind"] != "CustomResourceDefinition" and not exists(d)]
    try:
        kubectl("apply", "--server-side", "-f", str(INSTALL))
        assert all(exists(d) for d in docs)
        # the namespace enforces Pod Security "restricted": the operator pod is admitted under it
        kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{NAME}", "--timeout=180s")
        wait(lambda: policy_active(team, SA), "the admission policy to take effect")
        confined(team, SA, f"{NAME}-managed-objects")
    finally:
        if created:
            kubectl(
                "delete", "--ignore-not-found", "--timeout=180s", "-f", "-", input=yaml.safe_dump_all(created)
            )


def confined(team: str, sa: str, policy: str) -> None:
    """What ``sa`` may write, with RBAC and the admission policy ``policy`` together."""
    # RBAC lets the operator patch ConfigMaps everywhere; the policy refuses those it did not create
    kubectl("apply", "-f", "-", input=configmap("llmops-e2e-aws-auth", "kube-system"))
    try:
        for patch in ('{"data":{"mapRoles":"evil"}}', json.dumps({"metadata": {"labels": MANAGED}})):
            got = kubectl(
                f"--as={sa}", "-n", "kube-system", "patch", "configmap", "llmops-e2e-aws-auth",
                "--type=merge", "-p", patch, check=False,
            )  # fmt: skip
            assert got.returncode != 0 and "denied request" in got.stderr, got.stderr
            assert f"'{policy}'" in got.stderr
    finally:
        kubectl("-n", "kube-system", "delete", "configmap", "llmops-e2e-aws-auth", "--ignore-not-found")
    # ... and allows what it did create, but not stripping the label
    kubectl(f"--as={sa}", "create", "-f", "-", input=configmap("mine", team, MANAGED))
    kubectl(
        f"--as={sa}", "-n", team, "patch", "configmap", "mine", "--type=merge", "-p", '{"data":{"a":"2"}}'
    )
    strip = '{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}'
    got = kubectl(
        f"--as={sa}", "-n", team, "patch", "configmap", "mine", "--type=merge", "-p", strip, check=False
    )
    assert got.returncode != 0 and "denied request" in got.stderr, got.stderr
    # RBAC grants delete on PodDisruptionBudgets (a spec change can drop one): only on its own
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "theirs", "namespace": team},
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "theirs"}}}}  # fmt: skip
    kubectl("create", "-f", "-", input=json.dumps(pdb))
    got = kubectl(f"--as={sa}", "-n", team, "delete", "pdb", "theirs", check=False)
    assert got.returncode != 0 and "denied request" in got.stderr, got.stderr
    pdb["metadata"] |= {"name": "ours", "labels": MANAGED}
    kubectl("create", "-f", "-", input=json.dumps(pdb))
    kubectl(f"--as={sa}", "-n", team, "delete", "pdb", "ours")
    # and RBAC still refuses what no rule grants
    got = kubectl(f"--as={sa}", "-n", team, "get", "secrets", check=False)
    assert got.returncode != 0 and "forbidden" in got.stderr.lower()


def token_kubeconfig(tmp: Path) -> Path:
    """A kubeconfig for the current cluster that logs in with the Helm release's ServiceAccount token."""
    token = kubectl("-n", HELM_NS, "create", "token", HELM_NAME, "--duration=1h").stdout.strip()
    config = yaml.safe_load(kubectl("config", "view", "--raw", "--minify", "--flatten").stdout)
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    path = tmp / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def children_of(ns: str, name: str) -> bool:
    return all(get(kind, "-n", ns, name) for kind in ("deployment", "service", "hpa", "pdb"))


EXAMPLE = ROOT / "manifests" / "examples" / "cpu-endpoint.yaml"


def reconciles_the_example(team: str, tmp_path: Path, *scope: str) -> str:
    """Apply the CPU endpoint example in ``team``; its children appear. On the simulated cluster the
    operator runs here, logged in with the ServiceAccount's token and started with ``scope``; its log
    must show no refusal. Returns the endpoint's name."""
    operator = None
    if simulated():
        env = {**os.environ, "KUBECONFIG": str(token_kubeconfig(tmp_path)), "PYTHONPATH": os.pathsep.join(
            str(ROOT / p) for p in ("cli", "operator", "training-jobs", "inference-service"))}  # fmt: skip
        argv = [sys.executable, "-m", "llmops", "operator", "run", *scope, "--log-format=plain"]
        log = (tmp_path / "operator.log").open("w")
        operator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    try:
        kubectl("-n", team, "apply", "-f", str(EXAMPLE))
        wait(lambda: children_of(team, name), "the endpoint's Deployment, Service, HPA and PDB", timeout=180)
        labels = get("deployment", "-n", team, name)["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "llmops-operator"
        assert name in kubectl("get", "llmops", "-n", team).stdout
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
    if operator is not None:
        text = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in text and "denied request" not in text, text[-3000:]
    return name


@pytest.fixture
def release_namespace() -> Iterator[str]:
    """The release's namespace, labelled for Pod Security "restricted" as docs/install.md says."""
    kubectl("create", "namespace", HELM_NS)
    kubectl("label", "namespace", HELM_NS, "pod-security.kubernetes.io/enforce=restricted")
    yield HELM_NS
    run("helm", "--namespace", HELM_NS, "uninstall", HELM_RELEASE, "--ignore-not-found", "--wait")
    kubectl("delete", "namespace", HELM_NS, "--ignore-not-found", "--timeout=180s")


def helm_install(*args: str) -> None:
    # the CRDs exist already (install.yaml's, or the cluster's): the release takes them over
    run("helm", "--namespace", HELM_NS, "install", HELM_RELEASE, str(CHART), "--take-ownership",
        "--force-conflicts", "--wait", "--timeout=3m", *args)  # fmt: skip


def test_helm_installs_upgrades_tests_and_uninstalls(cluster, release_namespace, team, tmp_path):
    helm = ("helm", "--namespace", HELM_NS)
    helm_install()
    dep = get("deployment", "-n", HELM_NS, HELM_NAME)
    assert dep["metadata"]["annotations"]["meta.helm.sh/release-name"] == HELM_RELEASE
    crd = get("crd", "trainingjobs.llmops.dev")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    wait(lambda: policy_active(team, HELM_SA), "the admission policy to take effect")
    confined(team, HELM_SA, f"{HELM_NAME}-managed-objects")

    # the operator reconciles an example with exactly the chart's rights, under the admission policy
    name = reconciles_the_example(team, tmp_path, "--all-namespaces")

    # upgrade: a changed value reaches the operator's environment
    run(
        *helm,
        "upgrade",
        HELM_RELEASE,
        str(CHART),
        "--reuse-values",
        "--set",
        "config.storageClass=gp3",
        "--wait",
    )
    (container,) = get("deployment", "-n", HELM_NS, HELM_NAME)["spec"]["template"]["spec"]["containers"]
    assert {"name": "LLMOPS_STORAGE_CLASS", "value": "gp3"} in container["env"]

    # helm test: the pod calls the operator's Service (on the simulated cluster, it is completed for it)
    tester = subprocess.Popen([str(find("helm")), *helm[1:], "test", HELM_RELEASE, "--timeout=3m"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    if simulated():
        pod = f"{HELM_NAME}-test-health"
        wait(
            lambda: (get("pod", "-n", HELM_NS, pod) or {}).get("status", {}).get("phase") == "Running",
            "test pod",
        )
        kubectl("-n", HELM_NS, "annotate", "pod", pod, f"{EXIT_CODE}=0")
    out, _ = tester.communicate(timeout=240)
    assert tester.returncode == 0, out
    assert re.search(r"Phase:\s+Succeeded", out), out

    # uninstall: the operator and its rights go, the CRDs and the resources in them stay
    run(*helm, "uninstall", HELM_RELEASE, "--wait")
    for kind, ns, gone in (
        ("deployment", HELM_NS, HELM_NAME),
        ("serviceaccount", HELM_NS, HELM_NAME),
        ("clusterrole", None, HELM_NAME),
        ("validatingadmissionpolicy", None, f"{HELM_NAME}-managed-objects"),
    ):
        assert get(kind, *(["-n", ns] if ns else []), gone) is None, kind
    assert get("crd", "trainingjobs.llmops.dev") and get("crd", "inferenceendpoints.llmops.dev")
    assert get("inferenceendpoint", "-n", team, name)


def test_namespaced_mode_works_with_roles_only(cluster, release_namespace, team, tmp_path):
    """watchNamespaces: a Role per namespace, the operator started with --namespace; no cluster-wide
    writes, and the operator reconciles there."""
    helm_install("--set-json", f'watchNamespaces=["{team}"]')
    assert get("role", "-n", team, HELM_NAME) and get("rolebinding", "-n", team, HELM_NAME)
    for verb, resource in (("patch", "configmaps"), ("create", "deployments.apps")):
        assert kubectl("auth", "can-i", f"--as={HELM_SA}", verb, resource, "-n", team).stdout.strip() == "yes"
        got = kubectl("auth", "can-i", f"--as={HELM_SA}", verb, resource, "-n", "kube-system", check=False)
        assert got.stdout.strip() == "no", (verb, resource)
    (container,) = get("deployment", "-n", HELM_NS, HELM_NAME)["spec"]["template"]["spec"]["containers"]
    assert f"--namespace={team}" in container["args"] and "--all-namespaces" not in container["args"]
    reconciles_the_example(team, tmp_path, f"--namespace={team}")
