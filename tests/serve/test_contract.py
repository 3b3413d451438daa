"""The operator → server contract: a rendered pod's env is exactly what the server's Settings reads,
and the server image needs only the shared core and the server package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llmops_core import api
from llmops_core.serving import ServerContract
from llmops_operator.render import render
from llmops_serve.settings import Settings
from tests.manifests import endpoint

ROOT = Path(__file__).resolve().parents[2]


def container_env(**spec) -> dict[str, str]:
    objects = render(api.load(endpoint(**spec)))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "llmops_serve"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_rendered_env_parses_into_the_servers_settings(monkeypatch):
    env = container_env(
        model={"location": "pvc://models/tiny", "name": "chat"},
        server={
            "maxBatchSize": 7,
            "maxQueue": 33,
            "maxModelLen": 1024,
            "quantization": "int8",
            "dtype": "bfloat16",
            "apiKeySecret": {"name": "keys", "key": "list"},
        },
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert (s.model, s.name, s.max_batch_size, s.max_queue, s.max_model_len) == (
        "pvc://models/tiny",
        "chat",
        7,
        33,
        1024,
    )
    assert (s.quantize, s.dtype, s.log_json, s.port) == ("int8", "bfloat16", True, 8000)
    assert s.api_key_file and s.api_key_file.endswith("/list")
    assert s.drain_timeout > 0 and s.cache_dir and s.pvc_root
    contract = {f"LLMOPS_{f.upper()}" for f in ServerContract.model_fields}
    assert {k for k in env if k.startswith("LLMOPS_")} <= contract  # nothing the server would ignore


def test_defaults_defined_once(monkeypatch):
    env = container_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert (s.max_batch_size, s.max_queue) == (
        ServerContract.model_fields["max_batch_size"].default,
        ServerContract.model_fields["max_queue"].default,
    )
    assert issubclass(Settings, ServerContract)


def test_server_imports_only_core_and_itself():
    code = (
        "import sys, llmops_serve.__main__, llmops_serve.app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('llmops', 'llmops_operator', 'llmops_train'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    paths = [ROOT / "operator", ROOT / "inference-service"]
    env = {"PYTHONPATH": ":".join(map(str, paths)), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
