"""``llmops operator run``: the kopf operator with our registry and settings (kopf imported lazily)."""

from __future__ import annotations

import os
import sys
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import UNREACHABLE, CliError

if TYPE_CHECKING:
    from llmops_operator.controller.connection import Connection


def preflight(conn: Connection, timeout: float = 5.0) -> None:
    """One request to the API server: kopf would otherwise retry an unreachable one forever."""
    from llmops_operator.controller.connection import open_url

    try:
        open_url(conn, "/version", timeout).close()
    except urllib.error.HTTPError:
        return  # it answered (e.g. 401/403 on /version): kopf reports auth problems itself
    except (OSError, ValueError) as e:
        raise CliError(
            f"cannot reach the API server at {conn.server}: {type(e).__name__}", UNREACHABLE
        ) from None


@click.group("operator")
def operator() -> None:
    """Run the operator that reconciles TrainingJobs and InferenceEndpoints."""


@operator.command("run")
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Watch this namespace (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace.")
@click.option(
    "--liveness", metavar="URL", help="Serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz."
)
@click.option("--log-format", type=click.Choice(["full", "plain", "json"]), default="full", show_default=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Operator configuration file (else LLMOPS_CONFIG, else LLMOPS_* variables).",
)
@click.option("-v", "--verbose", is_flag=True)
@click.option("--debug", is_flag=True)
def run_cmd(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    liveness: str | None,
    log_format: str,
    config_path: Path | None,
    verbose: bool,
    debug: bool,
) -> None:
    """Reconcile until interrupted: children, status, progress, drift repair.

    Connects with the in-cluster service account, else the current kubeconfig context; exits 4
    at once when there is neither or the API server does not answer.

    \b
    Examples:
      llmops operator run -n ml-team
      llmops operator run -A --liveness http://0.0.0.0:8080/healthz
    """
    if not namespaces and not all_namespaces:
        raise click.UsageError("name at least one --namespace, or pass --all-namespaces")
    if namespaces and all_namespaces:
        raise click.UsageError("--namespace and --all-namespaces exclude each other")
    if config_path is not None:
        os.environ["LLMOPS_CONFIG"] = str(config_path)
    # kopf imports the kubernetes client (~40 MiB resident) whenever it is installed, only to
    # recognise that client's objects; the operator passes dicts through its own client.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[assignment]
    from llmops_operator.controller import connection, run, settings

    from .operator_config import load

    load(config_path)  # a bad setting is one line naming it, before connecting
    try:
        settings.TUNABLES.load_env()
    except ValueError as e:
        raise CliError(str(e)) from None
    try:
        conn = connection.from_environment()
    except (connection.CredentialsError, OSError) as e:
        raise CliError(
            f"no usable Kubernetes credentials: {e} (set KUBECONFIG, or run in a pod with a ServiceAccount)",
            UNREACHABLE,
        ) from None
    preflight(conn)
    run.run(
        namespaces=namespaces,
        all_namespaces=all_namespaces,
        liveness=liveness,
        log_format=log_format,
        verbose=verbose,
        debug=debug,
    )
