"""The ``llmops`` command: validate, render and install llmops.dev resources.

Heavy modules (kubernetes, kopf, torch, boto3) are imported inside the commands that need them, so
``llmops validate`` starts in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from . import __version__
from .dev import dev
from .documents import Problem, parse, read, training_outputs
from .local import local
from .operator_cmd import operator as operator_cmd


def _fail(problems: list[Problem]) -> None:
    for p in problems:
        click.echo(str(p), err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmops")
def cli() -> None:
    """Run LLM training and inference on Kubernetes and Amazon EKS."""


@cli.command()
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> None:
    """Check TrainingJob and InferenceEndpoint manifests (FILE or - for stdin)."""
    docs, problems = read(files)
    count = 0
    for doc, resource, issues in parse(docs):
        problems += [Problem(doc, i) for i in issues]
        count += resource is not None
    if problems:
        _fail(problems)
    click.echo(f"{count} resource(s) valid", err=True)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Operator settings file (images, storage class); LLMOPS_* variables apply on top.",
)
def render(files: tuple[str, ...], fmt: str, config_file: Path | None) -> None:
    """Print the Kubernetes objects the operator would create, exactly."""
    from llmops_core.config import OperatorConfig
    from llmops_operator.render import UnresolvedModel
    from llmops_operator.render import render as render_resource

    config = OperatorConfig.load(config_file)
    docs, problems = read(files)
    parsed = list(parse(docs))
    outputs = training_outputs(r for _, r, _ in parsed if r is not None)
    objects: list[dict] = []
    for doc, resource, issues in parsed:
        problems += [Problem(doc, i) for i in issues]
        if resource is None:
            continue
        source = getattr(resource.spec.model, "from_training_job", None)
        resolved = outputs.get((resource.metadata.namespace, source)) if source else None
        try:
            objects += render_resource(resource, config, resolved_model=resolved)
        except UnresolvedModel as e:
            from llmops_core.api import Issue

            path, _, message = str(e).partition(": ")
            problems.append(Problem(doc, Issue(path, message + " (give its manifest in the same command)")))
    if problems:
        _fail(problems)
    if fmt == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)


@cli.command()
@click.option(
    "--write",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per CRD into this directory instead of printing.",
)
@click.option(
    "--check",
    "check_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Exit 1 if the files in this directory differ from the models.",
)
def crds(directory: Path | None, check_dir: Path | None) -> None:
    """Print (or write, or check) the CustomResourceDefinitions generated from the API models."""
    from llmops_core.crd import crd_files, write_crds

    if check_dir is not None:
        stale = [
            n
            for n, text in crd_files().items()
            if not (check_dir / n).is_file() or (check_dir / n).read_text() != text
        ]
        if stale:
            click.echo(f"out of date: {', '.join(stale)}; run `llmops crds --write {check_dir}`", err=True)
            sys.exit(1)
        click.echo("CRDs are up to date", err=True)
    elif directory is not None:
        for path in write_crds(directory):
            click.echo(f"wrote {path}", err=True)
    else:
        click.echo("---\n".join(crd_files().values()), nl=False)


cli.add_command(local)
cli.add_command(operator_cmd)
cli.add_command(dev)

if __name__ == "__main__":
    cli()
