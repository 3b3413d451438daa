"""``llmops logs``: the trainer's ranks or the server's replicas, each line prefixed with its source.

Kubeflow labels each training pod with its replica type and index; the master is node rank 0 and
worker i is rank i + 1, the rank the trainer logs under. Followed streams run one thread per pod and
print whole lines, so output from several pods interleaves by line, never mid-line.
"""

from __future__ import annotations

import threading
from typing import Any

import click

from .cluster_options import cluster_options, connect
from .errors import CliError

REPLICA_TYPE = "training.kubeflow.org/replica-type"
REPLICA_INDEX = "training.kubeflow.org/replica-index"


def rank(pod: dict[str, Any]) -> int:
    labels = pod["metadata"].get("labels") or {}
    index = int(labels.get(REPLICA_INDEX, "0"))
    return index if labels.get(REPLICA_TYPE, "").lower() == "master" else index + 1


def sources(
    kind: str, pods: list[dict[str, Any]], only_rank: int | None, every: bool
) -> list[tuple[str, str, str]]:
    """(prefix, pod, container) to read: rank 0 of a job unless --rank/--all; every endpoint replica."""
    if kind == "TrainingJob":
        chosen = sorted(pods, key=rank)
        if not every:
            want = 0 if only_rank is None else only_rank
            chosen = [p for p in chosen if rank(p) == want]
            if not chosen:
                have = ", ".join(str(rank(p)) for p in sorted(pods, key=rank)) or "none yet"
                raise CliError(f"no pod for rank {want} (ranks with pods: {have})")
        return [(f"[rank {rank(p)}]", p["metadata"]["name"], "pytorch") for p in chosen]
    if only_rank is not None:
        raise CliError("--rank applies to TrainingJobs; an endpoint's replicas are all shown")
    return [(f"[{p['metadata']['name']}]", p["metadata"]["name"], "server") for p in pods]


@click.command("logs")
@click.argument("ref", metavar="NAME")
@cluster_options
@click.option("-f", "--follow", is_flag=True, help="Stream new lines until interrupted.")
@click.option(
    "--rank", "only_rank", type=click.IntRange(min=0), help="A TrainingJob's node rank (default 0)."
)
@click.option("--all", "every", is_flag=True, help="Every rank of a TrainingJob.")
@click.option("--tail", type=int, default=None, help="Lines of recent log per pod (default: all).")
def logs(
    ref: str,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    follow: bool,
    only_rank: int | None,
    every: bool,
    tail: int | None,
) -> None:
    """Print the logs of a TrainingJob's ranks or an InferenceEndpoint's replicas.

    Lines are prefixed with [rank N] or [pod-name]. NAME may be tj/NAME or ie/NAME.

    \b
    Examples:
      llmops logs tiny-cpu -f
      llmops logs llama-1b-p5 --all --tail 20
      llmops logs ie/tiny-chat -n ml-team
    """
    if every and only_rank is not None:
        raise click.UsageError("--rank and --all exclude each other")
    from .kube import split_ref

    cluster = connect(kubeconfig, context)
    ns = namespace or cluster.namespace
    kinds, name = split_ref(ref)
    found = [k for k in kinds if cluster.get(k, ns, name) is not None]
    if not found:
        raise CliError(f"{ref}: no TrainingJob or InferenceEndpoint of that name in namespace {ns}")
    if len(found) > 1:
        raise CliError(f"{name} is both a TrainingJob and an InferenceEndpoint: say tj/{name} or ie/{name}")
    kind = found[0]
    pods = cluster.pods(ns, f"{kind.pod_label}={name}")
    if not pods:
        raise CliError(f"{kind.kind} {name} has no pods yet (see `llmops status {ref}`)")
    streams = sources(kind.kind, pods, only_rank, every)
    lock = threading.Lock()

    def pump(prefix: str, pod: str, container: str) -> None:
        for line in cluster.log_lines(ns, pod, container, follow, tail):
            with lock:
                click.echo(f"{prefix} {line}" if len(streams) > 1 or kind.kind == "TrainingJob" else line)

    if not follow or len(streams) == 1:
        for s in streams:
            pump(*s)
        return
    threads = [threading.Thread(target=pump, args=s, daemon=True) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
