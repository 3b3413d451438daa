"""Every API call the operator made against the emulator is allowed by the ClusterRole that the chart
(charts/llmops, rendered into manifests/install.yaml) grants."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml
from op_harness import IE_API, PTJ, SEEN, endpoint, eventually, running, training_job

INSTALL = Path(__file__).parents[2] / "manifests" / "install.yaml"
pytestmark = pytest.mark.timeout(60)


def allowed() -> set[tuple[str, str, str]]:
    (role,) = [d for d in yaml.safe_load_all(INSTALL.read_text()) if d and d["kind"] == "ClusterRole"]
    out = set()
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((verb, group, resource))
    return out


def call_of(method: str, path: str, query: str) -> tuple[str, str, str] | None:
    """(verb, group, resource[/subresource]) of a request, or None for discovery (non-resource URLs)."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    if method == "GET":
        watching = parse_qs(query).get("watch", ["false"])[0] in ("true", "1")
        verb = "watch" if watching else ("get" if len(rest) > 1 else "list")
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
    return verb, group, resource


def test_call_of():
    assert call_of("GET", "/apis/apps/v1/namespaces/x/deployments", "watch=true") == (
        "watch",
        "apps",
        "deployments",
    )
    assert call_of("PATCH", "/apis/llmops.dev/v1alpha1/namespaces/x/trainingjobs/a/status", "") == (
        "patch",
        "llmops.dev",
        "trainingjobs/status",
    )
    assert call_of("GET", "/api/v1/namespaces", "") == ("list", "", "namespaces")
    assert call_of("GET", "/apis/kubeflow.org/v1", "") is None


async def test_every_call_is_allowed_by_the_clusterrole():
    # A scenario that touches every verb the operator has, so this test stands alone too.
    async with running() as (cluster, _op, _emu):
        await cluster.create(endpoint("tuned", model={"fromTrainingJob": "tiny"}))
        await cluster.create(training_job("tiny"))
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        await cluster.patch("v1", "configmaps", "tiny-progress", {"data": {"step": "1"}})
        done = [{"type": "Succeeded", "status": "True"}]
        await cluster.patch(*PTJ, "tiny", {"status": {"conditions": done}}, sub="status")
        await eventually(
            lambda: cluster.get("autoscaling/v2", "horizontalpodautoscalers", "tuned"), what="HPA"
        )
        await cluster.patch(*IE_API, "tuned", {"spec": {"replicas": {"min": 1, "max": 1}}})

        async def pruned():
            return await cluster.get("autoscaling/v2", "horizontalpodautoscalers", "tuned") is None

        await eventually(pruned, what="HPA removed")
    calls = {c for r in SEEN if (c := call_of(*r)) is not None}
    # what the operator's own client recorded, client side (kopf's calls are in the server-side log)
    from llmops_operator.controller import kube

    own = {(v, g, r + (f"/{s}" if s else "")) for v, g, r, s in kube.CALLS}
    assert own <= calls | allowed()
    calls |= own
    missing = sorted(calls - allowed())
    assert not missing, f"calls the ClusterRole does not allow: {missing}"
    # and the role holds nothing the operator never uses, bar the documented escalation-check verb
    unused = sorted(allowed() - calls - {("update", "", "configmaps")})
    print("granted but not seen in the emulator tests:", unused)
    assert {("create", "", "events"), ("patch", "llmops.dev", "trainingjobs/status")} <= calls
