"""``llmops status``: ``kubectl get tj,ie`` with the facts that matter: progress, loss, ETA, URL."""

from __future__ import annotations

from typing import Any

import click

from .cluster_options import cluster_options, connect
from .errors import CliError


def table(objects: list[dict[str, Any]], all_namespaces: bool) -> Any:
    """A borderless rich table, one section per kind, kubectl-style upper-case headers."""
    from rich.console import Group
    from rich.table import Table

    from .summary import summarize

    sections = []
    for kind, columns in (
        ("TrainingJob", ("PHASE", "PROGRESS", "LOSS", "ETA", "AGE")),
        ("InferenceEndpoint", ("PHASE", "READY", "URL", "AGE")),
    ):
        rows = [summarize(o) for o in objects if o["kind"] == kind]
        if not rows:
            continue
        t = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
        head = (("NAMESPACE",) if all_namespaces else ()) + (f"{kind.upper()}",) + columns + ("MESSAGE",)
        for h in head:
            t.add_column(h, overflow="fold")
        for s in rows:
            values = {"PHASE": s.phase, "PROGRESS": s.progress, "READY": s.progress, "LOSS": s.loss,
                      "ETA": s.eta, "URL": s.url, "AGE": s.age}  # fmt: skip
            cells = ([s.namespace] if all_namespaces else []) + [s.name] + [values[c] for c in columns]
            t.add_row(*cells, s.message)
        sections.append(t)
    return Group(*[x for t in sections for x in (t, "")][:-1])


def find(cluster: Any, ref: str | None, namespace: str | None) -> list[dict[str, Any]]:
    """REF (tj/NAME, ie/NAME or NAME) in ``namespace``, or everything there (None: all namespaces)."""
    from .kube import KINDS, split_ref

    if ref is None:
        return [o for k in KINDS.values() for o in cluster.list(k, namespace)]
    kinds, name = split_ref(ref)
    if namespace is None:
        found = [o for k in kinds for o in cluster.list(k, None) if o["metadata"]["name"] == name]
    else:
        found = [o for k in kinds if (o := cluster.get(k, namespace, name)) is not None]
    if not found:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        raise CliError(f"{ref}: no TrainingJob or InferenceEndpoint of that name in {where}")
    return found


@click.command("status")
@click.argument("ref", required=False, metavar="[NAME]")
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List across every namespace.")
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True
)
def status(
    ref: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    all_namespaces: bool,
    fmt: str,
) -> None:
    """Show TrainingJobs and InferenceEndpoints: phase, progress, loss, ETA, ready replicas, URL.

    NAME may be tj/NAME or ie/NAME when both kinds share a name. The MESSAGE column explains a
    phase that is not going well (the Stalled or Ready condition).

    \b
    Examples:
      llmops status
      llmops status tiny-cpu -n ml-team
      llmops status -A -o json | jq '.items[].status.progress'
    """
    from .manifests_cmd import dump

    cluster = connect(kubeconfig, context)
    ns = None if all_namespaces else namespace or cluster.namespace
    objects = find(cluster, ref, ns)
    if fmt != "table":
        click.echo(dump(objects, fmt), nl=False)
        return
    if not objects:
        click.echo(
            f"No TrainingJobs or InferenceEndpoints in {'any namespace' if ns is None else ns}.", err=True
        )
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a pipe or a file: never wrap a row (scripts split on whitespace)
        console = Console(width=100_000)
    console.print(table(objects, all_namespaces))
