"""``llmops validate``, ``render`` and ``crds``: manifests checked and rendered offline, no cluster."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from .documents import Document, Problem, parse, read, training_outputs
from .errors import FAILED


def fail(problems: list[Problem]) -> None:
    for p in problems:
        click.echo(str(p), err=True)
    sys.exit(FAILED)


def rendered(files: tuple[str, ...], config_file: Path | None, namespace: str | None = None) -> list[dict]:
    """Every child the operator would create for FILES, in order; exits 1 naming each problem.

    ``namespace`` applies to documents that name none (``deploy -n NS --dry-run=client``)."""
    from llmops_core.api import Issue, SpecError
    from llmops_operator.render import UnresolvedModel
    from llmops_operator.render import render as render_resource

    from .operator_config import load

    config = load(config_file)
    docs, problems = read(files)
    if namespace is not None:
        docs = [in_namespace(d, namespace) for d in docs]
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
        except SpecError as e:  # the operator configuration's allow-lists refuse it
            problems += [Problem(doc, i) for i in e.issues]
        except UnresolvedModel as e:
            path, _, message = str(e).partition(": ")
            problems.append(Problem(doc, Issue(path, message + " (give its manifest in the same command)")))
    if problems:
        fail(problems)
    return objects


def in_namespace(doc: Document, namespace: str) -> Document:
    body = doc.body
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("metadata"), dict)
        or body["metadata"].get("namespace")
    ):
        return doc
    return replace(doc, body={**body, "metadata": {**body["metadata"], "namespace": namespace}})


def dump(objects: list[dict], fmt: str) -> str:
    import json

    import yaml

    if fmt == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    return yaml.safe_dump_all(objects, sort_keys=False)


CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Operator settings file (images, storage class); LLMOPS_* variables apply on top.",
)


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--strict-fit", is_flag=True, help="Fail (not just warn) when a model would not fit its accelerators."
)
def validate(files: tuple[str, ...], strict_fit: bool) -> None:
    """Check TrainingJob and InferenceEndpoint manifests (FILE or - for stdin).

    Prints one `file:document: field: message` line per problem and exits 1; nothing on success
    but a count on stderr.

    \b
    Examples:
      llmops validate manifests/examples/*.yaml
      kustomize build overlays/prod | llmops validate -
    """
    from .estimate_cmd import fit_problems

    docs, problems = read(files)
    parsed = list(parse(docs))
    problems += [Problem(doc, i) for doc, _, issues in parsed for i in issues]
    count = sum(resource is not None for _, resource, _ in parsed)
    misfits = fit_problems(parsed)
    if strict_fit:
        problems += misfits
    else:
        for p in misfits:
            click.echo(f"warning: {p}", err=True)
    if problems:
        fail(problems)
    click.echo(f"{count} resource(s) valid", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@CONFIG_OPTION
def render(files: tuple[str, ...], fmt: str, config_file: Path | None) -> None:
    """Print the Kubernetes objects the operator would create, exactly.

    An endpoint serving a TrainingJob's output (spec.model.fromTrainingJob) needs that job's
    manifest in the same command.

    \b
    Examples:
      llmops render manifests/examples/p5-efa-training.yaml
      llmops render -o json job.yaml endpoint.yaml | jq '.items[].kind'
      LLMOPS_SERVER_IMAGE=registry.local/serve:1 llmops render endpoint.yaml
    """
    click.echo(dump(rendered(files, config_file), fmt), nl=False)


@click.command()
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
    """Print (or write, or check) the CustomResourceDefinitions generated from the API models.

    \b
    Examples:
      llmops crds | kubectl apply --server-side -f -
      llmops crds --check manifests/crds
    """
    from llmops_core.crd import crd_files, write_crds

    if check_dir is not None:
        stale = [
            n
            for n, text in crd_files().items()
            if not (check_dir / n).is_file() or (check_dir / n).read_text() != text
        ]
        if stale:
            click.echo(f"out of date: {', '.join(stale)}; run `llmops crds --write {check_dir}`", err=True)
            sys.exit(FAILED)
        click.echo("CRDs are up to date", err=True)
    elif directory is not None:
        for path in write_crds(directory):
            click.echo(f"wrote {path}", err=True)
    else:
        click.echo("---\n".join(crd_files().values()), nl=False)
