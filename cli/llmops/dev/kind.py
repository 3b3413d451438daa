"""``llmops dev up|down|load`` with kind: real pods in Docker (see docs/e2e.md).

One control-plane node and two workers labelled like p5 GPU nodes (kind cannot fake GPU capacity:
pods that request ``nvidia.com/gpu`` stay Pending there; use ``--simulated`` for scheduling), the
metrics-server, the Kubeflow training operator at the pinned version, our CRDs, and our images
built and loaded into the nodes. Each step is an argv list (``plan_*``), so the construction is
unit-tested without Docker; :func:`execute` runs them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .simulated import REPO, versions

CLUSTER = "llmops"
METRICS_SERVER_CHART_VERSION = "3.13.0"  # metrics-server v0.8.0
IMAGES = {  # image -> Dockerfile (the operator's config names these tags)
    "ghcr.io/llmops-dev/llmops-train:0.1.0": "Dockerfile.train",
    "ghcr.io/llmops-dev/llmops-serve:0.1.0": "Dockerfile.serve",
}
TOOLS = {
    "docker": "https://docs.docker.com/engine/install/",
    "kind": "go install sigs.k8s.io/kind@v0.31.0",
    "kubectl": "https://kubernetes.io/docs/tasks/tools/",
    "helm": "https://helm.sh/docs/intro/install/",
}

KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  apiServerAddress: 127.0.0.1
nodes:
  - role: control-plane
  - role: worker
    labels: &gpu
      node.kubernetes.io/instance-type: p5.48xlarge
      topology.kubernetes.io/zone: us-east-1a
      karpenter.sh/capacity-type: on-demand
      nvidia.com/gpu.present: "true"
  - role: worker
    labels: *gpu
"""


class MissingTool(RuntimeError):
    pass


def check_tools(needed: tuple[str, ...] = ("docker", "kind", "kubectl", "helm")) -> None:
    """One clear line naming what is missing and how to install it."""
    missing = [t for t in needed if not shutil.which(t)]
    if missing:
        hints = "; ".join(f"{t}: {TOOLS[t]}" for t in missing)
        raise MissingTool(
            f"llmops dev (kind) needs {', '.join(missing)} on PATH ({hints}); "
            "without Docker, use `llmops dev up --simulated`"
        )


def training_operator_kustomize() -> str:
    v = versions()["TRAINING_OPERATOR_VERSION"]
    return f"github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref={v}"


def plan_up(config_path: Path, name: str = CLUSTER) -> list[list[str]]:
    ctx = f"kind-{name}"
    return [
        ["kind", "create", "cluster", "--name", name, "--config", str(config_path), "--wait", "120s"],
        ["helm", "repo", "add", "--force-update", "metrics-server", "https://kubernetes-sigs.github.io/metrics-server/"],
        [
            "helm", "upgrade", "--install", "metrics-server", "metrics-server/metrics-server",
            "--kube-context", ctx, "--namespace", "kube-system",
            "--version", METRICS_SERVER_CHART_VERSION,
            "--set", "args={--kubelet-insecure-tls}", "--wait",
        ],
        # its CRDs are over 256 KiB: server-side apply
        ["kubectl", "--context", ctx, "apply", "--server-side", "-k", training_operator_kustomize()],
        ["kubectl", "--context", ctx, "apply", "--server-side", "-f", str(REPO / "manifests" / "crds")],
        [
            "kubectl", "--context", ctx, "-n", "kubeflow", "rollout", "status",
            "deployment/training-operator", "--timeout=5m",
        ],
        *plan_load(name),
    ]  # fmt: skip


def plan_load(name: str = CLUSTER) -> list[list[str]]:
    steps: list[list[str]] = []
    for image, dockerfile in IMAGES.items():
        steps.append(["docker", "build", "-f", str(REPO / dockerfile), "-t", image, str(REPO)])
        steps.append(["kind", "load", "docker-image", image, "--name", name])
    return steps


def plan_down(name: str = CLUSTER) -> list[list[str]]:
    return [["kind", "delete", "cluster", "--name", name]]


def execute(steps: list[list[str]], echo=print) -> None:
    for argv in steps:
        echo("+ " + " ".join(argv))
        subprocess.run(argv, check=True)


def up(name: str = CLUSTER, echo=print) -> None:
    check_tools()
    config = Path.home() / ".cache" / "llmops" / f"kind-{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(KIND_CONFIG)
    execute(plan_up(config, name), echo)


def load(name: str = CLUSTER, echo=print) -> None:
    check_tools(("docker", "kind"))
    execute(plan_load(name), echo)


def down(name: str = CLUSTER, echo=print) -> None:
    check_tools(("kind",))
    execute(plan_down(name), echo)
