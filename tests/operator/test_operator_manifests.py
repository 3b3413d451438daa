"""manifests/operator: valid Kubernetes objects, a restricted pod, the liveness probe on kopf's endpoint."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

DIR = Path(__file__).parents[2] / "manifests" / "operator"


def docs():
    out = []
    for path in sorted(DIR.glob("*.yaml")):
        if path.name in ("kustomization.yaml", "peering.yaml"):
            continue
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


@pytest.mark.parametrize("doc", docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_valid(doc):
    kubernetes_validate.validate(doc, "1.30", strict=True)


def test_deployment_is_restricted_and_probed_on_kopf_liveness():
    dep = next(d for d in docs() if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "llmops-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    liveness = next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--liveness="))
    assert liveness.endswith(c["livenessProbe"]["httpGet"]["path"])
    assert ":8080/" in liveness and c["ports"][0]["containerPort"] == 8080


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    listed = {Path(r).name for r in kust["resources"]}
    assert {p.name for p in DIR.glob("*.yaml")} - {"kustomization.yaml", "peering.yaml"} <= listed


def test_peering_manifest_is_optional_and_valid():
    peering = [d for d in yaml.safe_load_all((DIR / "peering.yaml").read_text()) if d]
    for doc in peering:
        if doc["apiVersion"] != "kopf.dev/v1":
            kubernetes_validate.validate(doc, "1.30", strict=True)
    assert {"get", "list", "watch", "patch"} == set(peering[2]["rules"][0]["verbs"])
