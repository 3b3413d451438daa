"""Dockerfile.train: what it copies exists, it runs as non-root, and its entrypoint module imports."""

from __future__ import annotations

import importlib
import re

from tests.train.helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile.train"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(r.split(None, 1)[0].upper(), r.split(None, 1)[1]) for r in rows]


def test_copied_sources_exist() -> None:
    copies = [args.split()[:-1] for op, args in _instructions() if op == "COPY"]
    assert copies
    for sources in copies:
        for src in sources:
            assert not src.startswith("--")
            assert (ROOT / src).exists(), src
    # The tiny example manifest trains on the corpus the image bakes in.
    assert "/opt/llmops/data/corpus.txt" in DOCKERFILE.read_text()


def test_runs_as_the_pods_non_root_user_with_a_cpu_or_cuda_build_arg() -> None:
    ops = _instructions()
    users = [args for op, args in ops if op == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert any(op == "ARG" and args.startswith("TORCH_VARIANT=cpu") for op, args in ops)
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in DOCKERFILE.read_text()
    assert any(op == "RUN" and '".[train,aws]"' in args for op, args in ops)


def test_entrypoint_is_the_launcher_and_its_modules_import() -> None:
    ops = dict(_instructions())
    assert ops["ENTRYPOINT"] == '["python", "-m", "llmops_train.launch"]'
    assert ops["CMD"] == '["--job", "/etc/llmops/job.yaml"]'
    launch = importlib.import_module("llmops_train.launch")
    trainer = importlib.import_module("llmops_train.__main__")
    assert callable(launch.main) and callable(trainer.main)
