"""``llmops local``: run a TrainingJob or serve a model on this machine, no cluster needed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

DEVICE = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto follows spec.resources.accelerator; cpu runs a GPU manifest here anyway.",
)


@click.group()
def local() -> None:
    """Run training and serving on this machine (CPU is fine), no cluster needed."""


@local.command("train")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Checkpoints and the model go here (default runs/<name>); rerun to resume.",
)
@click.option("--data", help="Train on this file or directory instead of spec.data.train.")
@click.option("--max-steps", type=int, help="Stop after this many steps (overrides the spec).")
@DEVICE
def train(file: str, run_dir: Path | None, data: str | None, max_steps: int | None, device: str) -> None:
    """Run FILE's TrainingJob with the bundled trainer; resumes from its last checkpoint.

    A data path that exists only in the trainer image (/opt/llmops/data/...) maps to the copy
    shipped with llmops. Ctrl-C stops at the next step with a checkpoint, as a node drain would;
    the same command resumes. On a terminal the trainer shows a progress bar; piped, stdout gets
    its JSON step records (they are also in RUN_DIR/checkpoints/metrics.jsonl).

    \b
    Examples:
      llmops local train manifests/examples/tiny-cpu-training.yaml
      llmops local train job.yaml --data ./my-corpus/ --max-steps 50
    """
    from . import local_train
    from .documents import load_one

    body, job = load_one(file, "TrainingJob")
    p = local_train.plan(body, job, run_dir or Path("runs") / job.metadata.name, data, max_steps, device)
    for note in p.notes:
        click.echo(note, err=True)
    env = " ".join(f"{k}={v}" for k, v in p.env.items())
    click.echo(f"$ {env + ' ' if env else ''}{' '.join(p.command)}", err=True)
    if sys.stdout.isatty():  # the trainer's own progress bar is enough; the records stay in the file
        click.echo(f"step records: {p.metrics}", err=True)
        local_train.run(p, on_record=lambda record: None)
    else:
        local_train.run(p)  # piped: one JSON record per line, for scripts
    click.echo(f"model: {p.model}")


@local.command("serve")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--name", default="local", show_default=True, help="Model id clients send.")
def serve(model: Path, port: int, name: str) -> None:
    """Serve MODEL (a Hugging Face directory) with the bundled server until Ctrl-C.

    \b
    Examples:
      llmops local serve runs/tiny-cpu/model --name tiny-cpu
      curl localhost:8000/v1/completions -d '{"model": "tiny-cpu", "prompt": "Shall I"}'
    """
    from .local_serve import check_model_dir, server_command, server_env

    check_model_dir(model)
    env = {**os.environ, **server_env(model, port, name)}
    os.execve(sys.executable, server_command(), env)
