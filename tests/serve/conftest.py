"""Fixtures: a tiny trained Llama on disk and live servers (uvicorn in a thread on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn

from bench.serve_tiny import build_tiny_model
from llmops_serve.app import create_app
from llmops_serve.settings import Settings
from llmops_serve.state import State

torch.set_num_threads(1)  # two shared cores: keep each test process to one


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    def __init__(self, url: str, state: State) -> None:
        self.url, self.state = url, state


@contextlib.contextmanager
def live_server(model: Path, **overrides: object) -> Iterator[Live]:
    settings = Settings(
        model=str(model), served_model_name="tiny", host="127.0.0.1", port=free_port(), **overrides
    )
    app = create_app(settings, load_in_background=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    for _ in range(200):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                break
        time.sleep(0.05)
    else:
        raise RuntimeError("server did not become ready")
    try:
        yield Live(url, app.state.llmops)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[Live]:
    with live_server(tiny_model, max_model_len=512, max_tokens_cap=400) as live:
        yield live


def wait_for(cond, timeout: float = 5.0) -> bool:
    """Poll `cond` (bounded): engine state changes on its own thread, a moment after events are sent."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()
