"""Start the bundled server on this machine the way an InferenceEndpoint's pod starts it.

The options travel as the same ``LLMOPS_*`` variables the renderer writes into the pod
(``llmops_core.serving``), so a manifest served here behaves like its pods; only the address is
local (127.0.0.1) and the model a local directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import CliError


def check_model_dir(model: Path) -> None:
    """A Hugging Face model directory has a config.json: say so before the server starts."""
    if not model.is_dir():
        raise CliError(f"{model}: not a directory")
    if not (model / "config.json").is_file():
        raise CliError(
            f"{model}: no config.json, so not a model directory "
            "(train one with `llmops local train JOB.yaml`; it writes runs/NAME/model)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(model: Path, port: int, name: str, endpoint: Any = None) -> dict[str, str]:
    """The server's LLMOPS_* options: an endpoint's spec.server when given, the defaults otherwise."""
    from llmops_core.serving import ServerContract, to_env

    options: dict[str, Any] = {"model": str(model), "served_model_name": name, "port": port}
    if endpoint is not None:
        server = endpoint.spec.server
        options |= {
            "max_batch_size": server.max_batch_size,
            "max_queue": server.max_queue,
            "max_model_len": server.max_model_len,
            "quantize": server.quantization,
            "dtype": server.dtype,
        }
    return to_env(ServerContract(**options))


def server_command() -> list[str]:
    return [sys.executable, "-m", "llmops_serve", "--host", "127.0.0.1"]


def start(env: dict[str, str], log: IO[str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        server_command(),
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches us; we drain the server with SIGTERM
    )


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 180.0) -> None:
    """Poll /ready (503 while the model loads) until 200, the process exits, or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise CliError(f"the server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise CliError(f"the server was not ready within {timeout:.0f} s")
        time.sleep(0.3)


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGTERM is a drain: requests in flight finish, then the server exits."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serving(
    model: Path, name: str, port: int | None = None, endpoint: Any = None, log: IO[str] | None = None
) -> Iterator[str]:
    """The server on 127.0.0.1 while the block runs; yields its OpenAI base URL."""
    check_model_dir(model)
    port = port or free_port()
    proc = start(server_env(model, port, name, endpoint), log)
    try:
        wait_ready(proc, port)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)
