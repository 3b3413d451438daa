"""A plain (non-editable) build carries all four packages, the templates and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.manifests import ROOT


@pytest.mark.slow
def test_wheel_contents(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("llmops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("llmops", "llmops_operator", "llmops_train", "llmops_serve"):
        assert f"{package}/__init__.py" in names, package
    templates = sorted(p.relative_to(ROOT / "operator").as_posix()
                       for p in (ROOT / "operator" / "llmops_operator" / "templates").rglob("*.j2"))  # fmt: skip
    assert templates and set(templates) <= names
    assert "operator/__init__.py" not in names and "__init__.py" not in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "llmops = llmops.main:cli" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_no_script_directory_shadows_the_standard_library() -> None:
    """Scripts run as `python bench/x.py` put bench/ first on sys.path: no name there may be a stdlib one."""
    for folder in ("bench",):
        clashes = [p.name for p in (ROOT / folder).glob("*.py") if p.stem in sys.stdlib_module_names]
        assert not clashes, f"{folder}/{clashes} would shadow the standard library"
    assert not (ROOT / "operator" / "__init__.py").exists()
