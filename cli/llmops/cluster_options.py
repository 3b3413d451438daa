"""The kubectl-style flags every cluster command shares, and the connection they describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .kube import Cluster


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--context", help="The kubeconfig context to use (default: the current one).")(f)
    f = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        help="Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).",
    )(f)
    return click.option(
        "-n", "--namespace", help="Namespace (default: the context's namespace, else default)."
    )(f)


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    from .kube import Cluster

    return Cluster(kubeconfig, context)
