"""``llmops delete``: remove resources by name or by the manifests that made them."""

from __future__ import annotations

import click

from .cluster_options import cluster_options, connect
from .errors import CliError


@click.command("delete")
@click.argument("refs", nargs=-1, metavar="[NAME]...")
@click.option("-f", "--filename", "files", multiple=True, help="Delete what these manifests describe.")
@cluster_options
@click.option("--ignore-not-found", is_flag=True, help="Exit 0 when a resource is already gone.")
def delete(
    refs: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    ignore_not_found: bool,
) -> None:
    """Delete TrainingJobs and InferenceEndpoints; the operator's children go with them.

    A job's checkpoints survive on their volume claim only when it is not one the operator
    created (see docs/operator.md). NAME may be tj/NAME or ie/NAME.

    \b
    Examples:
      llmops delete tiny-cpu
      llmops delete -f manifests/examples/tiny-cpu-training.yaml -n ml-team
      llmops delete tj/tiny-cpu ie/tiny-cpu-chat --ignore-not-found
    """
    from .kube import KINDS, split_ref

    if not refs and not files:
        raise click.UsageError("name a resource or pass -f FILE")
    cluster = connect(kubeconfig, context)
    ns = namespace or cluster.namespace
    targets = []
    if files:
        from .documents import read

        docs, problems = read(files)
        if problems:
            raise CliError("; ".join(map(str, problems)))
        for doc in docs:
            body = doc.body if isinstance(doc.body, dict) else {}
            if body.get("kind") not in KINDS or not (body.get("metadata") or {}).get("name"):
                raise CliError(f"{doc.where()}: not a TrainingJob or InferenceEndpoint with a name")
            targets.append(
                ([KINDS[body["kind"]]], body["metadata"].get("namespace") or ns, body["metadata"]["name"])
            )
    for ref in refs:
        kinds, name = split_ref(ref)
        if len(kinds) > 1 and all(cluster.get(k, ns, name) is not None for k in kinds):
            raise CliError(
                f"{name} is both a TrainingJob and an InferenceEndpoint: say tj/{name} or ie/{name}"
            )
        targets.append((kinds, ns, name))
    missing = []
    for kinds, target_ns, name in targets:
        gone = [k for k in kinds if cluster.delete(k, target_ns, name)]
        for k in gone:
            click.echo(f"{k.display}/{name} deleted")
        if not gone:
            missing.append(name)
    if missing and not ignore_not_found:
        raise CliError(f"not found in namespace {ns}: {', '.join(missing)}")
