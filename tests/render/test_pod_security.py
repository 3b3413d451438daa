"""Pod Security Standards "restricted", checked on every pod we render and on the init container the
Kubeflow training operator v1.9 adds to Worker pods: its built-in one fails the profile, the template
shipped in manifests/training-operator passes it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmops_core import api
from llmops_operator.render import render
from tests.manifests import ROOT, example_docs, training_job

OVERLAY = ROOT / "manifests" / "training-operator"
# Where training-operator v1.9.0 reads its init container template (pkg/config/config.go).
TEMPLATE_FILE = "/etc/config/initContainer.yaml"
# Its built-in template (pkg/controller.v1/pytorch/initcontainer.go), used when that file is absent.
BUILT_IN = """
- name: init-pytorch
  image: {{.InitContainerImage}}
  imagePullPolicy: IfNotPresent
  resources:
    limits:
      cpu: 100m
      memory: 20Mi
    requests:
      cpu: 50m
      memory: 10Mi
  command: ['sh', '-c', 'err=1;for i in $(seq {{.MaxTries}}); do if nslookup {{.MasterAddr}}; then err=0 && break; fi;echo waiting for master; sleep 2; done; exit $err']"""
VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}  # fmt: skip


def violations(pod: dict[str, Any]) -> list[str]:
    """What the "restricted" profile (baseline included) refuses in a PodSpec."""
    found = [f"{k}: true" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    found += [
        f"volume {v['name']}: type" for v in pod.get("volumes", []) if not set(v) - {"name"} <= VOLUME_TYPES
    ]
    pod_sc = pod.get("securityContext", {})
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc, name = c.get("securityContext", {}), c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities must drop ALL")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            found.append(f"{name}: seccompProfile")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


def pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for o in objects:
        if o["kind"] == "PyTorchJob":
            out |= {
                f"{role} pod": s["template"]["spec"] for role, s in o["spec"]["pytorchReplicaSpecs"].items()
            }
        elif o["kind"] == "Deployment":
            out["Deployment pod"] = o["spec"]["template"]["spec"]
    return out


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_rendered_pods_are_restricted(name: str, doc: dict) -> None:
    rendered = pods(render(api.load(doc), resolved_model="s3://bucket/model"))
    assert rendered
    for which, pod in rendered.items():
        assert not violations(pod), f"{name} {which}"


def worker_with_init(template: str) -> dict[str, Any]:
    """A rendered Worker pod with init-pytorch added as training-operator v1.9 does it."""
    doc = training_job(resources={"accelerator": "cpu", "nodes": 2})
    job = next(o for o in render(api.load(doc)) if o["kind"] == "PyTorchJob")
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    filled = (
        template.replace("{{.InitContainerImage}}", "alpine:3.10")
        .replace("{{.MaxTries}}", "100")
        .replace("{{.MasterAddr}}", "job-master-0")
    )
    pod.setdefault("initContainers", []).extend(yaml.safe_load(filled))
    return pod


def test_kubeflows_built_in_init_container_is_not_restricted() -> None:
    found = violations(worker_with_init(BUILT_IN))
    assert "init-pytorch: allowPrivilegeEscalation must be false" in found
    assert "init-pytorch: capabilities must drop ALL" in found


def test_the_shipped_init_container_template_is_restricted_and_mounted_where_read() -> None:
    template = (OVERLAY / "init-pytorch.gotmpl").read_text()
    pod = worker_with_init(template)
    assert [c["name"] for c in pod["initContainers"]] == ["init-pytorch"]
    assert not violations(pod)
    shipped = dict(pod["initContainers"][0])
    del shipped["securityContext"]
    assert shipped == worker_with_init(BUILT_IN)["initContainers"][0], "only the securityContext is added"
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    key, _, source = generator["files"][0].partition("=")
    patch = yaml.safe_load((OVERLAY / kustomization["patches"][0]["path"]).read_text())
    spec = patch["spec"]["template"]["spec"]
    (mount,) = spec["containers"][0]["volumeMounts"]
    assert f"{mount['mountPath']}/{key}" == TEMPLATE_FILE and source == "init-pytorch.gotmpl"
    assert spec["volumes"][0]["configMap"]["name"] == generator["name"]
