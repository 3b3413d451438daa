"""The real entrypoint as a subprocess: env settings, loading, SIGTERM drain with no request lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.serve.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_drains_in_flight_requests(tiny_model, tmp_path):
    port = free_port()
    key_file = tmp_path / "keys"
    key_file.write_text("# mounted from a Secret\nfile-key\n")
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'inference-service'}{os.pathsep}{ROOT / 'cli'}",
        "LLMOPS_MODEL": str(tiny_model),
        "LLMOPS_PORT": str(port),
        "LLMOPS_HOST": "127.0.0.1",
        "LLMOPS_API_KEY_FILE": str(key_file),
        "LLMOPS_DRAIN_TIMEOUT": "60",
        "OMP_NUM_THREADS": "1",
    }
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmops_serve", "--served-model-name", "tiny", "--log-json"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer file-key"}
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.05)
        assert httpx.get(url + "/ready").status_code == 200

        body = {"model": "tiny", "prompt": "The", "max_tokens": 1500, "ignore_eos": True, "stream": True}
        frames: list[str] = []
        started = threading.Event()

        def stream() -> None:
            with httpx.stream("POST", url + "/v1/completions", json=body, headers=auth, timeout=60) as r:
                for line in r.iter_lines():
                    if line:
                        frames.append(line)
                        started.set()

        t = threading.Thread(target=stream)
        t.start()
        assert started.wait(20)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(url + "/ready").status_code == 503
        late = httpx.post(url + "/v1/completions", json={**body, "stream": False}, headers=auth)
        assert late.status_code == 503 and late.headers["retry-after"]
        assert late.json()["error"]["type"] == "service_unavailable"
        t.join(timeout=60)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f[6:]) for f in frames[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert len(text) > 1500  # all 1500 tokens made it out (each is at least one character here)
    lines = log_path.read_text().splitlines()
    records = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert any(r.get("request_id") and r.get("status") == 200 for r in records)
    assert "file-key" not in log_path.read_text()
    # the serve extra's fast HTTP parser and event loop, not h11 and asyncio's (docs/benchmarks-serve.md)
    assert any(r.get("msg") == "http httptools_impl, event loop uvloop" for r in records), records[:5]


def test_load_failure_exits_nonzero(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "inference-service"), "LLMOPS_PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "llmops_serve", "--model", str(tmp_path / "missing"), "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert b"model load failed" in proc.stderr
