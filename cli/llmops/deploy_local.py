"""``llmops deploy --local``: the manifests a cluster would run, run on this machine instead.

TrainingJobs train one after another with the bundled trainer (as ``llmops local train``), then every
InferenceEndpoint is served by the bundled server on 127.0.0.1 until Ctrl-C, each on its own port.
``fromTrainingJob`` serves the job's local output (runs/<job>/model), trained in the same command
or earlier.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from .errors import CliError


def model_dir(endpoint: Any, run_dir: Path) -> Path:
    source = endpoint.spec.model
    if source.from_training_job:
        model = run_dir / source.from_training_job / "model"
        if not model.is_dir():
            raise CliError(
                f"{endpoint.metadata.name}: spec.model.fromTrainingJob {source.from_training_job} has no "
                f"local output in {model}; deploy its TrainingJob with --local first (or in the same command)"
            )
        return model
    location = source.location or ""
    if location.startswith("pvc://"):
        raise CliError(
            f"{endpoint.metadata.name}: spec.model.location {location} is a cluster volume; "
            "serve a local copy with `llmops local serve DIR`"
        )
    if location.startswith("s3://"):
        from llmops_core.storage import resolve

        return resolve(location)
    return Path(location).expanduser()


def deploy_local(files: tuple[str, ...], run_dir: Path, port: int) -> None:
    from . import local_train
    from .documents import Problem, parse, read
    from .manifests_cmd import fail

    docs, problems = read(files)
    jobs, endpoints = [], []
    for doc, resource, issues in parse(docs):
        problems += [Problem(doc, i) for i in issues]
        if resource is not None:
            (jobs if resource.kind == "TrainingJob" else endpoints).append((doc.body, resource))
    if problems:
        fail(problems)
    for _, ep in endpoints:
        if ep.spec.runtime != "llmops":
            raise CliError(f"{ep.metadata.name}: runtime {ep.spec.runtime} runs only on a cluster (GPU)")
    for body, job in jobs:
        plan = local_train.plan(body, job, run_dir / job.metadata.name)
        for note in plan.notes:
            click.echo(note, err=True)
        click.echo(f"trainingjob.llmops.dev/{job.metadata.name}: training in {plan.run_dir}", err=True)
        local_train.run(plan)
        click.echo(f"trainingjob.llmops.dev/{job.metadata.name} succeeded: {plan.model}")
    if endpoints:
        serve_all([(ep, model_dir(ep, run_dir)) for _, ep in endpoints], port)


def serve_all(endpoints: list[tuple[Any, Path]], port: int) -> None:
    """Start every server, wait for each to be ready, then hold until Ctrl-C and drain them."""
    from . import local_serve

    procs = []
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for i, (ep, model) in enumerate(endpoints):
            local_serve.check_model_dir(model)
            name = ep.spec.model.name or ep.metadata.name
            proc = local_serve.start(local_serve.server_env(model, port + i, name, ep))
            procs.append(proc)
            local_serve.wait_ready(proc, port + i)
            click.echo(
                f"inferenceendpoint.llmops.dev/{ep.metadata.name} ready: "
                f"http://127.0.0.1:{port + i}/v1 (model {name})"
            )
        click.echo("Ctrl-C stops the servers (they drain first).", err=True)
        while not stop.wait(0.5):
            exited = [p for p in procs if p.poll() is not None]
            if exited:
                raise CliError(f"a server exited with {exited[0].returncode}")
    finally:
        signal.signal(signal.SIGINT, previous)
        for p in procs:
            local_serve.stop(p)
