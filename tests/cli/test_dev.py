"""``llmops dev``: the kind variant's exact commands (no Docker here: construction, not execution),
the missing-tool message, and the simulated cluster's pinned files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmops.dev import kind, simulated
from llmops.main import cli

REPO = Path(__file__).resolve().parents[2]


def test_plan_up_is_exactly_these_commands(tmp_path):
    cfg = tmp_path / "kind.yaml"
    v = simulated.versions()["TRAINING_OPERATOR_VERSION"]
    assert kind.plan_up(cfg) == [
        ["kind", "create", "cluster", "--name", "llmops", "--config", str(cfg), "--wait", "120s"],
        ["helm", "repo", "add", "--force-update", "metrics-server", "https://kubernetes-sigs.github.io/metrics-server/"],
        [
            "helm", "upgrade", "--install", "metrics-server", "metrics-server/metrics-server",
            "--kube-context", "kind-llmops", "--namespace", "kube-system", "--version", "3.13.0",
            "--set", "args={--kubelet-insecure-tls}", "--wait",
        ],
        [
            "kubectl", "--context", "kind-llmops", "apply", "--server-side", "-k",
            f"github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref={v}",
        ],
        ["kubectl", "--context", "kind-llmops", "apply", "--server-side", "-f", str(REPO / "manifests" / "crds")],
        [
            "kubectl", "--context", "kind-llmops", "-n", "kubeflow", "rollout", "status",
            "deployment/training-operator", "--timeout=5m",
        ],
        *kind.plan_load(),
    ]  # fmt: skip


def test_plan_load_builds_and_loads_each_image():
    assert kind.plan_load("x") == [
        ["docker", "build", "-f", str(REPO / "Dockerfile.train"), "-t", "ghcr.io/llmops-dev/llmops-train:0.1.0", str(REPO)],
        ["kind", "load", "docker-image", "ghcr.io/llmops-dev/llmops-train:0.1.0", "--name", "x"],
        ["docker", "build", "-f", str(REPO / "Dockerfile.serve"), "-t", "ghcr.io/llmops-dev/llmops-serve:0.1.0", str(REPO)],
        ["kind", "load", "docker-image", "ghcr.io/llmops-dev/llmops-serve:0.1.0", "--name", "x"],
    ]  # fmt: skip


def test_plan_down():
    assert kind.plan_down() == [["kind", "delete", "cluster", "--name", "llmops"]]


def test_kind_config_has_two_gpu_labelled_workers_on_loopback():
    cfg = yaml.safe_load(kind.KIND_CONFIG)
    assert cfg["networking"]["apiServerAddress"] == "127.0.0.1"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    for n in cfg["nodes"][1:]:
        assert n["labels"]["node.kubernetes.io/instance-type"] == "p5.48xlarge"


def test_missing_tools_give_one_line_with_install_hints(monkeypatch):
    monkeypatch.setattr(kind.shutil, "which", lambda t: None if t in ("docker", "helm") else f"/usr/bin/{t}")
    result = CliRunner().invoke(cli, ["dev", "up"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "docker, helm" in lines[0] and "https://helm.sh" in lines[0] and "--simulated" in lines[0]


def test_build_sh_pins_every_version_simulated_reads():
    v = simulated.versions()
    assert set(v) == {"K8S_VERSION", "ETCD_VERSION", "KWOK_VERSION", "TRAINING_OPERATOR_VERSION"}
    assert all(re.fullmatch(r"v\d+\.\d+\.\d+", x) for x in v.values()), v
    bins = simulated.Bins.for_versions(Path("/c"))
    assert bins.k8s == Path(f"/c/k8s-{v['K8S_VERSION']}/bin")


def test_kwokctl_config_binds_loopback_and_enables_owner_reference_enforcement():
    text = (REPO / "cli/llmops/dev/kwokctl.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert cfg["options"]["bindAddress"] == "127.0.0.1"
    assert cfg["options"]["runtime"] == "binary"
    args = {a["key"]: a["value"] for p in cfg["componentsPatches"] for a in p["extraArgs"]}
    assert args["enable-admission-plugins"] == "OwnerReferencesPermissionEnforcement"


def test_fake_nodes_are_shaped_like_eks():
    items = yaml.safe_load((REPO / "cli/llmops/dev/nodes.yaml").read_text())["items"]
    by_type: dict[str, list] = {}
    for n in items:
        by_type.setdefault(n["metadata"]["labels"]["node.kubernetes.io/instance-type"], []).append(n)
    assert {k: len(v) for k, v in by_type.items()} == {"p5.48xlarge": 2, "trn1.32xlarge": 1, "m6i.8xlarge": 3}
    for n in by_type["p5.48xlarge"]:
        assert n["status"]["capacity"]["nvidia.com/gpu"] == "8"
        assert "vpc.amazonaws.com/efa" in n["status"]["allocatable"]
        assert n["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    trn = by_type["trn1.32xlarge"][0]
    assert trn["status"]["capacity"]["aws.amazon.com/neuron"] == "16"
    assert trn["spec"]["taints"][0]["key"] == "aws.amazon.com/neuron"
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in by_type["m6i.8xlarge"]}
    assert len(zones) == 3
    for n in items:
        assert "addresses" not in n["status"]  # kwok fills them: never a routable fake IP
        assert {"karpenter.sh/capacity-type", "topology.kubernetes.io/zone"} <= set(n["metadata"]["labels"])


def test_in_pod_argv_mounts_the_token_folder_at_the_fixed_path(tmp_path):
    argv = simulated.in_pod_argv(tmp_path, ["python", "-m", "llmops"])
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "sh"]
    assert argv[-5:] == [
        str(tmp_path),
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "python",
        "-m",
        "llmops",
    ]


def test_dev_group_is_registered():
    result = CliRunner().invoke(cli, ["dev", "--help"])
    assert result.exit_code == 0
    assert "up" in result.output and "down" in result.output and "load" in result.output


@pytest.mark.parametrize("sub", ["up", "down"])
def test_simulated_flag_exists(sub):
    assert "--simulated" in CliRunner().invoke(cli, ["dev", sub, "--help"]).output
