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


def test_entrypoint_suits_torchrun_and_its_module_imports() -> None:
    ops = dict(_instructions())
    assert ops["ENTRYPOINT"] == '["torchrun"]'
    cmd = ops["CMD"]
    module = re.search(r'"-m", "([\w.]+)"', cmd).group(1)
    assert module == "llmops_train" and '"/etc/llmops/job.yaml"' in cmd
    main = importlib.import_module(f"{module}.__main__")
    assert callable(main.main)
