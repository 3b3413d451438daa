"""``llmops local``: run a TrainingJob or an InferenceEndpoint on this machine, no cluster needed.

The same programs the pods run (``llmops_train``, ``llmops_serve``), launched the way the pods
launch them, reading the same validated manifest. Only locations change: the run directory stands
in for the checkpoint volume and the output, and ``--data`` can point the job at a local sample.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click
import yaml

from .documents import parse, read

EXAMPLE = "manifests/examples/tiny-cpu-training.yaml"


def _load_one(path: str, kind: str) -> tuple[dict[str, Any], Any]:
    docs, problems = read([path])
    found = [(d, r, i) for d, r, i in parse(docs) if isinstance(d.body, dict) and d.body.get("kind") == kind]
    if problems or not found:
        for p in problems:
            click.echo(str(p), err=True)
        raise click.ClickException(f"{path}: no valid {kind} found")
    doc, resource, issues = found[0]
    if issues:
        for issue in issues:
            click.echo(f"{doc.where()}: {issue}", err=True)
        raise click.ClickException(f"{path}: the {kind} is invalid")
    return doc.body, resource


def corpus() -> Path:
    """The small public-domain corpus shipped with the trainer."""
    return Path(str(resources.files("llmops_train") / "data" / "corpus.txt"))


def train_command(job_file: Path, run_dir: Path, processes: int, max_steps: int | None) -> list[str]:
    """torchrun for several local processes, plain python for one: what the PyTorchJob runs."""
    program = ["-m", "llmops_train", "--job", str(job_file), "--output", str(run_dir / "model"),
               "--checkpoint-dir", str(run_dir / "checkpoints")]  # fmt: skip
    if max_steps is not None:
        program += ["--max-steps", str(max_steps)]
    if processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                *program]  # fmt: skip
    return [sys.executable, *program]


def run_training(path: str, run_dir: Path, data: str | None, max_steps: int | None) -> Path:
    body, job = _load_one(path, "TrainingJob")
    if data is not None:
        body = {**body, "spec": {**body["spec"], "data": {**body["spec"]["data"], "train": data}}}
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file = run_dir / "job.yaml"
    tmp = job_file.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(body, sort_keys=False))
    tmp.replace(job_file)
    processes = job.spec.resources.accelerators_per_node if job.spec.resources.accelerator == "cpu" else 1
    cmd = train_command(job_file, run_dir, processes, max_steps)
    click.echo(f"$ {' '.join(cmd)}", err=True)
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"training failed (exit {result.returncode}); checkpoints in {run_dir}")
    return run_dir / "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(model: Path, port: int, name: str, timeout: float = 180.0):
    """Start the bundled server on 127.0.0.1, wait for /ready, stop it with SIGTERM (a drain)."""
    import httpx

    cmd = [sys.executable, "-m", "llmops_serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--served-model-name", name]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise click.ClickException(f"the server exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise click.ClickException(f"the server was not ready within {timeout:.0f} s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


@click.group()
def local() -> None:
    """Run training and serving on this machine (CPU is fine), no cluster needed."""


@local.command("train")
@click.argument("file")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Checkpoints and the model go here (default runs/<name>); rerun to resume.",
)
@click.option("--data", help="Train on this file or directory instead of spec.data.train.")
@click.option("--max-steps", type=int, help="Stop after this many steps (overrides the spec).")
def train(file: str, run_dir: Path | None, data: str | None, max_steps: int | None) -> None:
    """Run FILE's TrainingJob with the bundled trainer; resumes from its last checkpoint."""
    body, _ = _load_one(file, "TrainingJob")
    model = run_training(file, run_dir or Path("runs") / body["metadata"]["name"], data, max_steps)
    click.echo(f"model: {model}")


@local.command("serve")
@click.argument("model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--name", default="local", show_default=True, help="Model id clients send.")
def serve(model: Path, port: int, name: str) -> None:
    """Serve MODEL (a Hugging Face directory) with the bundled server until Ctrl-C."""
    os.execv(sys.executable, [sys.executable, "-m", "llmops_serve", "--model", str(model),
                              "--host", "127.0.0.1", "--port", str(port), "--served-model-name", name])  # fmt: skip


@local.command("demo")
@click.option(
    "--job", "job_file", type=click.Path(exists=True, dir_okay=False), default=EXAMPLE, show_default=True
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
)
@click.option("--max-steps", type=int, default=300, show_default=True)
@click.option(
    "--fresh/--resume", default=True, show_default=True, help="Start over, or resume a previous demo."
)
def demo(job_file: str, run_dir: Path, max_steps: int, fresh: bool) -> None:
    """Pre-train the tiny example on the shipped corpus, serve it, and ask it something."""
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    model = run_training(job_file, run_dir, str(corpus()), max_steps)
    from openai import OpenAI

    with serving(model, free_port(), "tiny-cpu") as base_url:
        client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        prompt = "Shall I compare thee"
        reply = client.completions.create(model="tiny-cpu", prompt=prompt, max_tokens=40, temperature=0)
        click.echo(f"\nprompt:     {prompt!r}\ncompletion: {reply.choices[0].text!r}")
        click.echo(
            f"usage:      {reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} generated tokens"
        )
    click.echo(f"\nmodel in {model}; serve it again with `llmops local serve {model}`")
