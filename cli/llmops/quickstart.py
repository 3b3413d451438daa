"""``llmops quickstart``: the whole product in one command, on a laptop.

Trains the tiny example on the shipped corpus with the bundled trainer, serves the result with the
bundled server, asks it one question through its OpenAI API, and shows the manifests that do the
same on a cluster. Progress is one bar; the trainer's and server's logs go to files in the run
directory, named when something fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .errors import CliError

EXAMPLES = Path("manifests/examples")
JOB = "tiny-cpu-training.yaml"
ENDPOINT = "endpoint-from-training.yaml"
PROMPT = "Shall I compare thee"


def example(name: str) -> Path:
    """An example manifest, relative when run from the checkout (the paths shown are then short)."""
    for path in (EXAMPLES / name, Path(__file__).resolve().parents[2] / EXAMPLES / name):
        if path.is_file():
            return path
    raise CliError(f"{EXAMPLES / name} not found: run quickstart from an llmops checkout")


def complete(base_url: str, model: str, prompt: str, max_tokens: int = 40) -> dict[str, Any]:
    """One /v1/completions call, greedy, so the answer is reproducible."""
    import urllib.request

    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    req = urllib.request.Request(
        f"{base_url}/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)


@click.command()
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/quickstart"),
    show_default=True,
    help="Checkpoints, the model and the logs go here.",
)
@click.option("--max-steps", type=int, help="Train this many steps (default: the example's maxSteps).")
@click.option("--prompt", default=PROMPT, show_default=True, help="What to ask the model.")
@click.option(
    "--fresh/--resume", default=True, show_default=True, help="Start over, or resume a previous run."
)
def quickstart(run_dir: Path, max_steps: int | None, prompt: str, fresh: bool) -> None:
    """Train a tiny model, serve it, ask it one question: no cluster, CPU is enough.

    Then prints the two manifests that do the same on Kubernetes (`llmops deploy ... --wait`).
    About a minute on two cores; logs in RUN_DIR/train.log and RUN_DIR/serve.log.

    \b
    Examples:
      llmops quickstart
      llmops quickstart --max-steps 50 --prompt "To be, or not"
    """
    from rich.console import Console
    from rich.panel import Panel
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.syntax import Syntax

    from . import local_serve, local_train
    from .documents import load_one

    console = Console(stderr=True)
    out = Console()
    job_file, endpoint_file = example(JOB), example(ENDPOINT)
    body, job = load_one(str(job_file), "TrainingJob")
    _, endpoint = load_one(str(endpoint_file), "InferenceEndpoint")
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    plan = local_train.plan(body, job, run_dir, max_steps=max_steps)
    total = max_steps or job.spec.hyperparameters.max_steps or 0
    for note in plan.notes:
        console.print(f"[dim]{note}[/dim]", soft_wrap=True)

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with (
        (run_dir / "train.log").open("w") as log,
        Progress(*columns, console=console, transient=False) as bar,
    ):
        task = bar.add_task(f"training {job.metadata.name}", total=total or None, loss="-")

        def on_record(record: dict[str, Any]) -> None:
            if "loss" in record:
                bar.update(task, completed=record["step"], loss=f"{record['loss']:.3f}")
            elif record.get("event") == "exported":
                bar.update(task, description=f"trained {job.metadata.name}")

        local_train.run(plan, on_record=on_record, log=log, say=console.print)

    name = endpoint.spec.model.name or endpoint.metadata.name
    with (
        (run_dir / "serve.log").open("w") as log,
        console.status(f"starting the server for {name} (log: {log.name})"),
        local_serve.serving(plan.model, name, endpoint=endpoint, log=log) as base_url,
    ):
        reply = complete(base_url, name, prompt)
    usage = reply.get("usage") or {}
    out.print(
        Panel(
            f"[bold]{prompt}[/bold]{reply['choices'][0]['text']}",
            title=f"{name} answers",
            subtitle=f"{usage.get('prompt_tokens')} prompt + {usage.get('completion_tokens')} generated tokens",
        )
    )
    out.print(f"\nOn a cluster the same takes two manifests ({job_file}, {endpoint_file}):", soft_wrap=True)
    for path in (job_file, endpoint_file):
        text = path.read_text().strip()
        out.print(Syntax(text, "yaml", theme="ansi_dark", background_color="default", word_wrap=True))
        out.print("---")
    out.print(
        f"Apply them with `llmops deploy {job_file} {endpoint_file} --wait`; "
        f"`llmops render {job_file} {endpoint_file}` shows the Kubernetes objects the operator creates.\n"
        f"The model is in {plan.model}; serve it again with `llmops local serve {plan.model} --name {name}`.",
        soft_wrap=True,
    )
