"""Run a TrainingJob on this machine with the bundled trainer, launched the way its pods launch it.

Only locations change: the run directory stands in for the checkpoint volume and the output, a data
path that exists only inside the trainer image maps to the copy shipped with the package, and
``--data`` points the job at local data. Ctrl-C reaches the trainer as SIGTERM, the signal a node
drain sends, so it writes a checkpoint at the next step boundary and a rerun resumes from it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import click

from .errors import INTERRUPTED, CliError

IMAGE_DATA_DIR = "/opt/llmops/data"  # where Dockerfile.train copies the shipped corpus


def shipped_data() -> Path:
    """The small public-domain corpus shipped with the trainer (the image has it at IMAGE_DATA_DIR)."""
    return Path(str(resources.files("llmops_train") / "data"))


def local_data(uri: str, field: str, override: str | None = None) -> tuple[str, str | None]:
    """The data location to train on here, and a note when it is not the manifest's own."""
    if override is not None:
        if "://" not in override and not Path(override).exists():
            raise CliError(f"--data {override}: not found")
        return override, f"{field}: {override} (from --data; the manifest says {uri})"
    if uri == IMAGE_DATA_DIR or uri.startswith(IMAGE_DATA_DIR + "/"):
        mapped = shipped_data() / uri[len(IMAGE_DATA_DIR) :].lstrip("/")
        if not Path(uri).exists() and mapped.exists():
            return str(
                mapped
            ), f"{field}: {uri} exists only in the trainer image; using the shipped copy {mapped}"
    if uri.startswith("pvc://"):
        raise CliError(f"{field} {uri} is a cluster volume; pass --data PATH to train on local data")
    if "://" not in uri and not Path(uri).expanduser().exists():
        raise CliError(f"{field} {uri}: not found on this machine; pass --data PATH (a file or directory)")
    return uri, None


@dataclass(frozen=True)
class Plan:
    """What ``local train`` will run: the rewritten manifest, the command, and what it changed."""

    name: str
    run_dir: Path
    command: list[str]
    env: dict[str, str]
    notes: list[str]

    @property
    def model(self) -> Path:
        return self.run_dir / "model"

    @property
    def metrics(self) -> Path:
        return self.run_dir / "checkpoints" / "metrics.jsonl"


def train_command(
    job_file: Path, run_dir: Path, processes: int, max_steps: int | None, device: str = "auto"
) -> tuple[list[str], dict[str, str]]:
    """The command and extra environment: plain python for one process; for several, the trainer's
    launcher (torchrun configured by ``PET_*`` variables, as in a pod), which forwards SIGTERM and
    exits 143 once the workers have checkpointed."""
    args = ["--job", str(job_file), "--output", str(run_dir / "model"),
            "--checkpoint-dir", str(run_dir / "checkpoints"), "--device", device]  # fmt: skip
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    if processes > 1:
        env = {"PET_STANDALONE": "1", "PET_NNODES": "1", "PET_NPROC_PER_NODE": str(processes)}
        return [sys.executable, "-m", "llmops_train.launch", *args], env
    return [sys.executable, "-m", "llmops_train", *args], {}


def plan(
    body: dict[str, Any],
    job: Any,
    run_dir: Path,
    data: str | None = None,
    max_steps: int | None = None,
    device: str = "auto",
) -> Plan:
    """Write the locally adjusted manifest into ``run_dir`` (atomically) and build the command."""
    import yaml

    spec_data = dict(body["spec"]["data"])
    notes: list[str] = []
    spec_data["train"], note = local_data(spec_data["train"], "spec.data.train", data)
    notes += [note] if note else []
    if spec_data.get("validation"):
        spec_data["validation"], note = local_data(spec_data["validation"], "spec.data.validation")
        notes += [note] if note else []
    body = {**body, "spec": {**body["spec"], "data": spec_data}}
    run_dir.mkdir(parents=True, exist_ok=True)
    job_file = run_dir / "job.yaml"
    tmp = job_file.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(body, sort_keys=False))
    tmp.replace(job_file)
    resources_ = job.spec.resources
    processes = resources_.accelerators_per_node if resources_.accelerator == "cpu" else 1
    command, env = train_command(job_file, run_dir, processes, max_steps, device)
    return Plan(job.metadata.name, run_dir, command, env, notes)


@contextmanager
def interrupts_as_sigterm(proc: subprocess.Popen, say: Callable[[str], None]) -> Iterator[list[int]]:
    """First Ctrl-C sends SIGTERM (checkpoint, then exit); a second one kills the trainer."""
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            say("stopping: the trainer writes a checkpoint at the next step (Ctrl-C again to kill it)")
            proc.send_signal(signal.SIGTERM)
        else:
            proc.kill()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def last_checkpoint(metrics: Path) -> int | None:
    """The step of the newest checkpoint the trainer reported in its metrics file."""
    step = None
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "checkpoint":
                step = record.get("step")
    return step


def run(
    p: Plan,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    log: IO[str] | None = None,
    say: Callable[[str], None] = lambda m: click.echo(m, err=True),
) -> None:
    """Run the trainer; JSON records go to ``on_record`` (else straight to stdout), stderr to ``log``.

    The trainer runs in its own session so the terminal's Ctrl-C reaches only this process, which
    forwards it as SIGTERM.
    """
    proc = subprocess.Popen(
        p.command,
        env={**os.environ, **p.env},
        stdout=subprocess.PIPE if on_record else None,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    with interrupts_as_sigterm(proc, say) as received:
        if on_record is not None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("{"):
                    with suppress(ValueError):
                        on_record(json.loads(line))
        code = proc.wait()
    if received:
        step = last_checkpoint(p.metrics)
        where = f"checkpoint at step {step} in {p.run_dir}" if step else f"no checkpoint yet in {p.run_dir}"
        raise CliError(f"interrupted: {where}; run the same command again to resume", INTERRUPTED)
    if code != 0:
        hint = f" (its log: {log.name})" if log is not None and hasattr(log, "name") else ""
        raise CliError(f"training failed (exit {code}){hint}; checkpoints in {p.run_dir}")
