"""What ``llmops eks check`` looks at and concludes: accelerator capacity vs what llmops pods expect.

The expectations come from the renderer itself (``llmops_operator.render.pods``): pods select nodes
by ``node.kubernetes.io/instance-type``, tolerate ``nvidia.com/gpu`` or ``aws.amazon.com/neuron``
NoSchedule taints, and request device resources that only a device plugin advertises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, INFO, WARN, ERROR = "ok", "info", "warn", "error"
EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}
CATEGORIES = {"p": "nvidia-gpu", "g": "nvidia-gpu", "trn": "aws-trainium", "inf": "aws-inferentia"}
PLUGINS = {  # DaemonSet name fragments: upstream charts, the GPU operator, the AWS charts
    "nvidia": ("nvidia-device-plugin",),
    "neuron": ("neuron-device-plugin",),
    "efa": ("efa-k8s-device-plugin", "efa-device-plugin"),
}
PLUGIN_OF = {"nvidia-gpu": "nvidia", "aws-trainium": "neuron", "aws-inferentia": "neuron"}


@dataclass(frozen=True)
class Capacity:
    """A managed node group or a Karpenter NodePool, in the terms the checks need."""

    source: str  # "node group" or "node pool"
    name: str
    instance_types: list[str]
    families: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    taints: list[dict[str, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    builtin_plugin: bool = False  # Bottlerocket NVIDIA AMIs ship the device plugin

    @property
    def accelerators(self) -> set[str]:
        from llmops_core.api.hardware import family_accelerator

        found = {family_accelerator(t) for t in self.instance_types}
        found |= {family_accelerator(f"{f}.x") for f in self.families}
        found |= {CATEGORIES[c] for c in self.categories if c in CATEGORIES}
        return found - {"cpu"}


@dataclass(frozen=True)
class Finding:
    level: str
    message: str


def node_groups(client: Any, cluster: str) -> list[Capacity]:
    out = []
    for page in client.get_paginator("list_nodegroups").paginate(clusterName=cluster):
        for name in page.get("nodegroups", []):
            ng = client.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
            scaling = ng.get("scalingConfig") or {}
            taints = [{"key": t["key"], "value": t.get("value", ""), "effect": EFFECTS.get(t["effect"], t["effect"])}
                      for t in ng.get("taints") or []]  # fmt: skip
            ami = ng.get("amiType", "")
            out.append(
                Capacity(
                    "node group",
                    name,
                    list(ng.get("instanceTypes") or []),
                    taints=taints,
                    labels=dict(ng.get("labels") or {}),
                    detail=f"{scaling.get('minSize')}-{scaling.get('maxSize')} nodes, {ami}",
                    builtin_plugin=ami.startswith("BOTTLEROCKET") and "NVIDIA" in ami,
                )
            )
    return out


def node_pool(obj: dict[str, Any]) -> Capacity:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    wanted: dict[str, list[str]] = {}
    for req in spec.get("requirements") or []:
        if req.get("operator") == "In":
            wanted[req["key"]] = list(req.get("values") or [])
    labels = (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    limits = (obj.get("spec") or {}).get("limits") or {}
    return Capacity(
        "node pool",
        obj["metadata"]["name"],
        wanted.get("node.kubernetes.io/instance-type", []),
        families=wanted.get("karpenter.k8s.aws/instance-family", []),
        categories=wanted.get("karpenter.k8s.aws/instance-category", []),
        taints=[
            {"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]}
            for t in spec.get("taints") or []
        ],
        labels=dict(labels),
        detail="limits " + ", ".join(f"{k} {v}" for k, v in limits.items()) if limits else "no limits",
    )


def cluster_side(
    kubeconfig: str | None, context: str | None
) -> tuple[list[Capacity], dict[str, str | None], str | None]:
    """Karpenter NodePools and device-plugin DaemonSets; a note instead when the cluster is unreachable."""
    from kubernetes.client.exceptions import ApiException

    from .kube import Cluster

    try:
        cluster = Cluster(kubeconfig, context)
        pools: list[Capacity] = []
        for version in ("v1", "v1beta1"):
            try:
                items = cluster.request("GET", f"/apis/karpenter.sh/{version}/nodepools").get("items") or []
            except ApiException as e:
                if e.status == 404:
                    continue
                raise
            pools = [node_pool(i) for i in items]
            break
        daemonsets = cluster.request("GET", "/apis/apps/v1/daemonsets").get("items") or []
    except Exception as e:
        from .errors import translate

        known = translate(e)
        if known is None:
            raise
        return [], {}, f"NodePools and device plugins not checked: {known.message}"
    names = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in daemonsets]
    plugins = {
        p: next((n for n in names if any(f in n for f in frags)), None) for p, frags in PLUGINS.items()
    }
    return pools, plugins, None


def findings(
    capacity: list[Capacity], plugins: dict[str, str | None], kubernetes_checked: bool
) -> list[Finding]:
    from llmops_core.api.hardware import INSTANCES
    from llmops_operator.render.pods import ACCELERATOR_TOLERATIONS, INSTANCE_TYPE_LABEL

    out: list[Finding] = []
    accelerated = [c for c in capacity if c.accelerators]
    if not accelerated:
        out.append(
            Finding(
                WARN, "no GPU, Trainium or Inferentia capacity: only `accelerator: cpu` manifests can run"
            )
        )
    for c in accelerated:
        where = f"{c.source} {c.name}"
        problems = 0
        tolerated = {t["key"] for a in c.accelerators for t in ACCELERATOR_TOLERATIONS[a]}
        for t in c.taints:
            if t["effect"] == "PreferNoSchedule":
                continue
            if t["key"] not in tolerated or t["effect"] == "NoExecute":
                problems += 1
                out.append(Finding(WARN, f"{where}: taint {t['key']}={t['value']}:{t['effect']} is not tolerated by "
                                         "llmops pods; add it to spec.scheduling.tolerations"))  # fmt: skip
        if not any(t["key"] in tolerated for t in c.taints):
            out.append(Finding(INFO, f"{where}: no accelerator taint, so CPU-only pods may fill these nodes"))
        if kubernetes_checked:
            for a in sorted(c.accelerators):
                plugin = PLUGIN_OF[a]
                if not plugins.get(plugin) and not (plugin == "nvidia" and c.builtin_plugin):
                    problems += 1
                    resource = "nvidia.com/gpu" if plugin == "nvidia" else "aws.amazon.com/neuron"
                    out.append(Finding(ERROR, f"{where}: no {plugin} device plugin DaemonSet; pods requesting "
                                              f"{resource} will stay Pending"))  # fmt: skip
            if any(INSTANCES.get(t) and INSTANCES[t].efa for t in c.instance_types) and not plugins.get(
                "efa"
            ):
                problems += 1
                out.append(Finding(WARN, f"{where}: EFA-capable instances but no EFA device plugin; "
                                         "jobs with spec.resources.efa will stay Pending"))  # fmt: skip
        if not problems:
            kinds = ", ".join(sorted(c.accelerators))
            unchecked = "" if kubernetes_checked else " (device plugins not checked)"
            out.append(Finding(OK, f"{where}: {kinds} ready for llmops pods{unchecked}"))
    types = sorted({t for c in accelerated for t in c.instance_types})
    if types:
        out.append(Finding(INFO, f"llmops pods select nodes by {INSTANCE_TYPE_LABEL}; spec.resources.instanceTypes "
                                 f"may name: {', '.join(types)}"))  # fmt: skip
    return out


def report(
    cluster: str,
    groups: list[Capacity],
    pools: list[Capacity],
    plugins: dict[str, str | None],
    found: list[Finding],
    note: str | None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a pipe or a log: keep each row on one line
        console = Console(width=400)
    t = Table(title=f"EKS cluster {cluster}: capacity", title_justify="left", header_style="bold", box=None)
    for h in ("SOURCE", "NAME", "INSTANCE TYPES", "ACCELERATOR", "TAINTS", "LABELS", "SIZE"):
        t.add_column(h, overflow="fold")
    for c in groups + pools:
        types = (
            ", ".join(c.instance_types or [f"{f}.*" for f in c.families] or [f"{x}*" for x in c.categories])
            or "any"
        )
        taints = ", ".join(f"{x['key']}={x['value']}:{x['effect']}" for x in c.taints) or "-"
        labels = ", ".join(f"{k}={v}" for k, v in c.labels.items()) or "-"
        t.add_row(
            c.source, c.name, types, ", ".join(sorted(c.accelerators)) or "cpu", taints, labels, c.detail
        )
    console.print(t)
    if note:
        console.print(f"[yellow]{note}[/yellow]", soft_wrap=True)
    else:
        if not pools:
            console.print("Karpenter: no NodePools found")
        for name, where in plugins.items():
            console.print(f"{name} device plugin: {where or 'not found'}", highlight=False)
    marks = {
        OK: "[green]ok[/green]",
        INFO: "[blue]info[/blue]",
        WARN: "[yellow]warn[/yellow]",
        ERROR: "[red]error[/red]",
    }
    for f in found:
        console.print(f"{marks[f.level]:>5}  {f.message}", soft_wrap=True, highlight=False)
