"""`llmops local` and `llmops quickstart`: examples run as shipped, Ctrl-C checkpoints, no log spam."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from llmops import local_train
from llmops.documents import load_one
from llmops.main import cli
from tests.manifests import ROOT, endpoint, training_job

TINY = ROOT / "manifests" / "examples" / "tiny-cpu-training.yaml"
PATHS = ":".join(str(ROOT / p) for p in ("cli", "operator", "training-jobs", "inference-service"))


def llmops(*args: str, tmp: Path) -> subprocess.Popen:
    env = {"PYTHONPATH": PATHS, "PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    return subprocess.Popen(
        [sys.executable, "-m", "llmops", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def test_train_command_uses_the_launcher_for_several_processes(tmp_path: Path) -> None:
    one, env = local_train.train_command(tmp_path / "job.yaml", tmp_path, 1, 5)
    assert one[1:3] == ["-m", "llmops_train"] and one[-2:] == ["--max-steps", "5"] and env == {}
    two, env = local_train.train_command(tmp_path / "job.yaml", tmp_path, 2, None)
    assert two[1:3] == ["-m", "llmops_train.launch"] and "--max-steps" not in two
    assert env == {"PET_STANDALONE": "1", "PET_NNODES": "1", "PET_NPROC_PER_NODE": "2"}


def test_image_data_path_maps_to_the_shipped_corpus(tmp_path: Path) -> None:
    body, job = load_one(str(TINY), "TrainingJob")
    assert body["spec"]["data"]["train"] == "/opt/llmops/data/corpus.txt"
    plan = local_train.plan(body, job, tmp_path)
    written = yaml.safe_load((tmp_path / "job.yaml").read_text())
    assert Path(written["spec"]["data"]["train"]) == local_train.shipped_data() / "corpus.txt"
    assert (local_train.shipped_data() / "corpus.txt").stat().st_size > 0
    assert any("exists only in the trainer image" in n for n in plan.notes)
    assert plan.command[plan.command.index("--job") + 1] == str(tmp_path / "job.yaml")


def test_data_flag_wins_and_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "mine.txt"
    data.write_text("hello\n")
    body, job = load_one(str(TINY), "TrainingJob")
    plan = local_train.plan(body, job, tmp_path / "run", data=str(data))
    assert yaml.safe_load((tmp_path / "run" / "job.yaml").read_text())["spec"]["data"]["train"] == str(data)
    assert plan.notes == [
        f"spec.data.train: {data} (from --data; the manifest says /opt/llmops/data/corpus.txt)"
    ]


@pytest.mark.parametrize("train", ["/nowhere/corpus.txt", "pvc://datasets/corpus"])
def test_missing_data_names_the_field_and_the_data_flag(tmp_path: Path, train: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(training_job(data={"train": train})))
    result = CliRunner().invoke(cli, ["local", "train", str(path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"spec.data.train {train}" in result.stderr and "--data PATH" in result.stderr


def test_serve_on_an_empty_folder_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["local", "serve", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and "no config.json" in result.stderr


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_a_rerun_resumes(tmp_path: Path) -> None:
    job = training_job(
        data={"train": "/opt/llmops/data/corpus.txt"},
        hyperparameters={"maxSteps": 5000, "batchSize": 2, "sequenceLength": 32, "evalInterval": 5000},
        checkpoint={"interval": 5000},
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    run_dir = tmp_path / "run"
    proc = llmops("local", "train", str(path), "--run-dir", str(run_dir), tmp=tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:  # the trainer's JSON records; stop it once it is past step 2
        if '"step": 3' in line:
            break
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    assert checkpoints and int(checkpoints[-1].removeprefix("step-")) >= 3
    assert f"checkpoint at step {int(checkpoints[-1].removeprefix('step-'))}" in err
    # the same command resumes from it
    resumed = llmops("local", "train", str(path), "--run-dir", str(run_dir), "--max-steps",
                     str(int(checkpoints[-1].removeprefix("step-")) + 1), tmp=tmp_path)  # fmt: skip
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    first = next(yaml.safe_load(line) for line in out.splitlines() if line.startswith('{"time"'))
    assert first["step"] == int(checkpoints[-1].removeprefix("step-")) + 1


@pytest.mark.slow
def test_quickstart_trains_serves_answers_and_shows_the_manifests(tmp_path: Path) -> None:
    proc = llmops("quickstart", "--run-dir", str(tmp_path / "run"), "--max-steps", "10", tmp=tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "tiny-cpu-chat answers" in out and "5 prompt + 40 generated tokens" in out
    assert "kind: TrainingJob" in out and "kind: InferenceEndpoint" in out and "llmops deploy" in out
    assert not any(line.lstrip().startswith('{"') for line in (out + err).splitlines())  # no JSON log lines
    assert len(out.splitlines()) < 90 and len(err.splitlines()) < 10
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert "draining" in (tmp_path / "run" / "serve.log").read_text()


def test_deploy_local_needs_a_local_model(tmp_path: Path) -> None:
    from llmops import deploy_local

    path = tmp_path / "ep.yaml"
    path.write_text(yaml.safe_dump(endpoint(model={"fromTrainingJob": "tiny-cpu"})))
    result = CliRunner().invoke(cli, ["deploy", str(path), "--local", "--run-dir", str(tmp_path)])
    assert result.exit_code == 1 and "deploy its TrainingJob with --local first" in result.stderr
    _, ep = load_one(str(ROOT / "manifests" / "examples" / "cpu-endpoint.yaml"), "InferenceEndpoint")
    with pytest.raises(click.ClickException, match="pvc://models/tiny-chat is a cluster volume"):
        deploy_local.model_dir(ep, tmp_path)
    (tmp_path / "tiny-cpu" / "model").mkdir(parents=True)
    _, ep = load_one(str(path), "InferenceEndpoint")
    assert deploy_local.model_dir(ep, tmp_path) == tmp_path / "tiny-cpu" / "model"


@pytest.mark.slow
def test_deploy_local_trains_then_serves_the_endpoint(tmp_path: Path) -> None:
    import json
    import urllib.request

    job = yaml.safe_load(TINY.read_text())
    job["spec"]["hyperparameters"]["maxSteps"] = 5
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    port = 18000 + os.getpid() % 1000
    proc = llmops("deploy", str(tmp_path / "job.yaml"), str(ROOT / "manifests/examples/endpoint-from-training.yaml"),
                  "--local", "--run-dir", str(tmp_path / "runs"), "--port", str(port), tmp=tmp_path)  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("inferenceendpoint.llmops.dev/tiny-cpu-chat ready"):
            break
    assert lines[-1].startswith(
        f"inferenceendpoint.llmops.dev/tiny-cpu-chat ready: http://127.0.0.1:{port}/v1"
    )
    assert any(line.startswith("trainingjob.llmops.dev/tiny-cpu succeeded") for line in lines)
    body = json.dumps({"model": "tiny-cpu-chat", "prompt": "Shall I", "max_tokens": 3}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert json.load(resp)["usage"]["completion_tokens"] == 3
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
