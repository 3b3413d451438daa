"""``llmops operator run``: the kopf operator with our registry and settings (kopf imported lazily)."""

from __future__ import annotations

import os
from pathlib import Path

import click


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
    """Reconcile until interrupted: children, status, progress, drift repair."""
    if not namespaces and not all_namespaces:
        raise click.UsageError("name at least one --namespace, or pass --all-namespaces")
    if namespaces and all_namespaces:
        raise click.UsageError("--namespace and --all-namespaces exclude each other")
    if config_path is not None:
        os.environ["LLMOPS_CONFIG"] = str(config_path)
    from llmops_operator.controller import run, settings

    settings.config()  # fail fast on a bad configuration file, before connecting
    run.run(
        namespaces=namespaces,
        all_namespaces=all_namespaces,
        liveness=liveness,
        log_format=log_format,
        verbose=verbose,
        debug=debug,
    )
