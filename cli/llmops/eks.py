"""``llmops eks``: a kubeconfig entry for an EKS cluster, and a check of its accelerator nodes.

``kubeconfig`` writes what ``aws eks update-kubeconfig`` writes: the cluster's endpoint and CA from
``DescribeCluster`` and a user that runs ``aws eks get-token`` for every connection, so no token is
ever stored in the file. The file is merged (other entries kept) and replaced atomically, mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .errors import EXIT_CODES_HELP

AUTH_API = "client.authentication.k8s.io/v1beta1"


def aws_client(service: str, region: str | None, profile: str | None) -> Any:
    import boto3

    return boto3.Session(profile_name=profile, region_name=region).client(service)


def kubeconfig_entry(cluster: dict[str, Any], region: str, alias: str | None, profile: str | None) -> dict:
    """The cluster, user and context for one EKS cluster, named by its ARN like the AWS CLI does."""
    arn, name = cluster["arn"], cluster["name"]
    exec_: dict[str, Any] = {
        "apiVersion": AUTH_API,
        "command": "aws",
        "args": ["--region", region, "eks", "get-token", "--cluster-name", name, "--output", "json"],
        "interactiveMode": "Never",
    }
    if profile:
        exec_["env"] = [{"name": "AWS_PROFILE", "value": profile}]
    return {
        "cluster": {
            "name": arn,
            "cluster": {
                "server": cluster["endpoint"],
                "certificate-authority-data": cluster["certificateAuthority"]["data"],
            },
        },
        "user": {"name": arn, "user": {"exec": exec_}},
        "context": {"name": alias or arn, "context": {"cluster": arn, "user": arn}},
    }


def merge(config: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``entry``'s cluster, user and context replaced or added, and made current."""
    out = {"apiVersion": "v1", "kind": "Config", "preferences": {}, **config}
    for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        items = [i for i in out.get(section) or [] if i.get("name") != entry[key]["name"]]
        out[section] = [*items, entry[key]]
    out["current-context"] = entry["context"]["name"]
    return out


def write_private(path: Path, text: str) -> None:
    """Atomic replace, readable by the owner only (a kubeconfig names credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@click.group()
def eks() -> None:
    """Amazon EKS: connect to a cluster and check its accelerator nodes."""


REGION = click.option("--region", help="AWS region (default: the profile's or AWS_REGION).")
PROFILE = click.option("--profile", help="AWS named profile (default: the environment's credentials).")


@eks.command("kubeconfig")
@click.argument("cluster")
@REGION
@PROFILE
@click.option("--alias", help="Context name (default: the cluster's ARN).")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to update (default: the first of $KUBECONFIG, else ~/.kube/config).",
)
def kubeconfig_cmd(
    cluster: str, region: str | None, profile: str | None, alias: str | None, kubeconfig: Path | None
) -> None:
    """Add CLUSTER to your kubeconfig and make it the current context.

    The user entry runs `aws eks get-token` on each connection (the AWS CLI must be installed);
    no token is written to the file.

    \b
    Examples:
      llmops eks kubeconfig ml-prod --region us-west-2
      llmops eks kubeconfig ml-prod --alias prod --profile ml-admin
    """
    import yaml

    client = aws_client("eks", region, profile)
    described = client.describe_cluster(name=cluster)["cluster"]
    if described.get("status") not in (None, "ACTIVE"):
        click.echo(f"note: cluster {cluster} is {described['status']}", err=True)
    path = (
        kubeconfig
        or Path((os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]).expanduser()
    )
    config = yaml.safe_load(path.read_text()) if path.is_file() else {}
    entry = kubeconfig_entry(described, client.meta.region_name, alias, profile)
    write_private(path, yaml.safe_dump(merge(config or {}, entry), sort_keys=False))
    click.echo(f"context {entry['context']['name']} added to {path} and made current")


@eks.command("check", epilog=EXIT_CODES_HELP)
@click.argument("cluster")
@REGION
@PROFILE
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="For node pools and device plugins.")
@click.option("--context", help="Kubeconfig context (default: the current one).")
def check_cmd(
    cluster: str, region: str | None, profile: str | None, kubeconfig: str | None, context: str | None
) -> None:
    """Report CLUSTER's accelerator capacity and whether llmops pods can use it.

    Lists managed node groups (AWS API) and Karpenter NodePools (Kubernetes API): which GPU,
    Trainium and Inferentia instance types exist, whether their taints are ones llmops pods
    tolerate, and whether the NVIDIA, Neuron and EFA device plugins run. Exits 1 when something
    would keep llmops pods from scheduling or from getting their devices.

    \b
    Examples:
      llmops eks check ml-prod --region us-west-2
      llmops eks check ml-prod --context prod
    """
    from . import eks_check

    client = aws_client("eks", region, profile)
    groups = eks_check.node_groups(client, cluster)
    pools, plugins, note = eks_check.cluster_side(kubeconfig, context)
    findings = eks_check.findings(groups + pools, plugins, kubernetes_checked=note is None)
    eks_check.report(cluster, groups, pools, plugins, findings, note)
    if any(f.level == eks_check.ERROR for f in findings):
        raise click.exceptions.Exit(1)
