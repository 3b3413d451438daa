"""``llmops deploy``: validate, then server-side apply as field manager ``llmops`` (or run here).

The documents are applied as written (only the namespace is filled in), so the CLI owns exactly the
fields the user wrote and a later ``kubectl apply --server-side`` or another manager's change to
other fields does not fight it. Nothing is applied when any document is invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cluster_options import cluster_options, connect
from .errors import EXIT_CODES_HELP, OK, CliError


def namespaced(body: dict[str, Any], flag: str | None, default: str) -> dict[str, Any]:
    """kubectl's rule: a namespace in the file must agree with -n; otherwise -n, else the context's."""
    meta = body.get("metadata") or {}
    own = meta.get("namespace")
    if own and flag and own != flag:
        raise CliError(
            f"{meta.get('name')}: the manifest's namespace {own!r} does not match --namespace {flag!r}"
        )
    return {**body, "metadata": {**meta, "namespace": own or flag or default}}


def verdict(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """created, unchanged or configured: by what the API server holds for the fields users write."""
    if before is None:
        return "created"

    def essence(o: dict[str, Any]) -> Any:
        m = o.get("metadata") or {}
        return o.get("spec"), m.get("labels"), m.get("annotations")

    return "unchanged" if essence(before) == essence(after) else "configured"


def apply_all(cluster: Any, bodies: list[dict[str, Any]], dry_run: bool, force: bool) -> list[tuple]:
    from .kube import KINDS

    done = []
    for body in bodies:
        kind, meta = KINDS[body["kind"]], body["metadata"]
        before = cluster.get(kind, meta["namespace"], meta["name"])
        after = cluster.apply(body, dry_run=dry_run, force=force)
        done.append((kind, meta["namespace"], meta["name"], verdict(before, after)))
    return done


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("files", nargs=-1, required=True)
@cluster_options
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client", "server"]),
    default="none",
    show_default=True,
    help="client: print the children the operator would create, contact nothing; "
    "server: the API server checks and admits but stores nothing.",
)
@click.option("--wait", is_flag=True, help="Follow until jobs succeed and endpoints are ready.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Seconds --wait waits (exit 3 when it runs out).",
)
@click.option("--force-conflicts", is_flag=True, help="Take over fields another manager owns.")
@click.option("--local", "run_local", is_flag=True, help="Run on this machine instead of a cluster.")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="With --local: each job trains in RUN_DIR/<name>.",
)
@click.option(
    "--port", type=int, default=8000, show_default=True, help="With --local: the first server port."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --dry-run=client: operator settings file (LLMOPS_* variables apply on top).",
)
def deploy(
    files: tuple[str, ...],
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    dry_run: str,
    wait: bool,
    timeout: float,
    force_conflicts: bool,
    run_local: bool,
    run_dir: Path,
    port: int,
    config_file: Path | None,
) -> None:
    """Apply TrainingJob and InferenceEndpoint manifests (FILE or - for stdin).

    Every document is validated first; nothing is applied if any is invalid. Each resource is
    reported as created, configured or unchanged. With --wait a live view follows conditions,
    progress, loss, ETA and ready replicas; the exit code is 0 when all succeeded or are ready, 1
    when one failed, 3 on timeout. --local trains and serves the same manifests on this machine
    with the bundled trainer and server.

    \b
    Examples:
      llmops deploy manifests/examples/tiny-cpu-training.yaml -n ml-team --wait
      llmops deploy job.yaml endpoint.yaml --dry-run=client
      llmops deploy job.yaml --dry-run=server --context prod
      llmops deploy manifests/examples/tiny-cpu-training.yaml \\
          manifests/examples/endpoint-from-training.yaml --local
    """
    from .documents import Problem, parse, read
    from .manifests_cmd import dump, fail, rendered

    if run_local:
        from .deploy_local import deploy_local

        deploy_local(files, run_dir, port)
        return
    if dry_run == "client":
        click.echo(dump(rendered(files, config_file, namespace), "yaml"), nl=False)
        return
    docs, problems = read(files)
    valid = []
    for doc, resource, issues in parse(docs):
        problems += [Problem(doc, i) for i in issues]
        if resource is not None:
            valid.append(doc.body)
    if problems:
        fail(problems)
    cluster = connect(kubeconfig, context)
    bodies = [namespaced(b, namespace, cluster.namespace) for b in valid]
    suffix = " (server dry run)" if dry_run == "server" else ""
    applied = apply_all(cluster, bodies, dry_run == "server", force_conflicts)
    for kind, _, name, what in applied:
        click.echo(f"{kind.display}/{name} {what}{suffix}")
    if wait and dry_run == "none":
        code = wait_and_report(cluster, [(k, ns, n) for k, ns, n, _ in applied], timeout)
        if code != OK:
            raise click.exceptions.Exit(code)


def wait_and_report(cluster: Any, refs: list, timeout: float) -> int:
    from rich.console import Console

    from .errors import TIMEOUT
    from .summary import FAILED, SUCCEEDED
    from .wait import View, poll

    console = Console(stderr=True)
    with View(console) as view:
        code, summaries = poll(cluster, refs, timeout, view)
    for s in summaries:
        ref = f"{s.kind.lower()}.llmops.dev/{s.name}"
        if s.outcome == SUCCEEDED:
            click.echo(f"{ref} {s.phase.lower()}")
        elif s.outcome == FAILED:
            click.echo(f"{ref} {s.phase.lower()}: {s.message or 'see `llmops status`'}", err=True)
        elif code == TIMEOUT:
            click.echo(f"{ref} still {s.phase.lower()} after {timeout:g} s", err=True)
    return code
