"""Read manifests: multi-document YAML files (or stdin), each document tagged with where it came from."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the API (pydantic) loads on first use: `llmops --help` must stay fast
    from llmops_core.api import Issue, Resource


@dataclass(frozen=True)
class Document:
    source: str  # file name, or "-" for stdin
    index: int  # 1-based position in the file
    body: Any

    def where(self) -> str:
        return f"{self.source}:{self.index}"


@dataclass(frozen=True)
class Problem:
    document: Document | None
    issue: Issue
    source: str = ""

    def __str__(self) -> str:
        where = self.document.where() if self.document else self.source
        return f"{where}: {self.issue}"


def read(paths: Iterable[str]) -> tuple[list[Document], list[Problem]]:
    import yaml

    from llmops_core.api import Issue

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[Document] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        except OSError as e:
            problems.append(Problem(None, Issue("(file)", e.strerror or str(e)), source=path))
            continue
        try:
            bodies = [b for b in yaml.load_all(text, Loader=loader) if b is not None]
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f"line {mark.line + 1}" if mark else "(yaml)"
            problems.append(
                Problem(None, Issue(at, f"invalid YAML: {getattr(e, 'problem', e)}"), source=path)
            )
            continue
        if not bodies:
            problems.append(Problem(None, Issue("(file)", "no documents found"), source=path))
        docs += [Document(path, i, b) for i, b in enumerate(bodies, start=1)]
    return docs, problems


def parse(docs: Iterable[Document]) -> Iterator[tuple[Document, Resource | None, list[Issue]]]:
    """Each document with its resource, or the issues that stop it from being one."""
    from llmops_core.api import SpecError, load

    for doc in docs:
        try:
            yield doc, load(doc.body), []
        except SpecError as e:
            yield doc, None, e.issues


def training_outputs(resources: Iterable[Resource]) -> dict[tuple[str | None, str], str]:
    """(namespace, name) → output location of the TrainingJobs given alongside an endpoint."""
    from llmops_core.api import TrainingJob

    return {
        (r.metadata.namespace, r.metadata.name): r.spec.output.location
        for r in resources
        if isinstance(r, TrainingJob)
    }


def load_one(path: str, kind: str) -> tuple[dict[str, Any], Resource]:
    """The first ``kind`` in ``path``, valid, with its raw body; one error line per problem otherwise."""
    import click

    from .errors import CliError

    docs, problems = read([path])
    found = [(d, r, i) for d, r, i in parse(docs) if isinstance(d.body, dict) and d.body.get("kind") == kind]
    for p in problems:
        click.echo(str(p), err=True)
    if problems or not found:
        raise CliError(f"{path}: no valid {kind} found")
    doc, resource, issues = found[0]
    for issue in issues:
        click.echo(f"{doc.where()}: {issue}", err=True)
    if resource is None:
        raise CliError(f"{path}: the {kind} is invalid")
    return doc.body, resource
