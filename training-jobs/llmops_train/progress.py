"""Progress: JSON lines on stdout and in the metrics file, a tqdm bar on a terminal, and the ConfigMap.

Only rank 0 reports. The ConfigMap reporter is a ~50-line urllib client rather than the ``kubernetes``
package: it needs one PATCH, the train extra stays small, and we control its timeouts. It runs in a
daemon thread that posts the latest snapshot every few seconds with short timeouts, so a slow or
unreachable API server costs the training loop nothing but a dictionary copy.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import threading
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("llmops_train")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_eta(seconds: float) -> str:
    s = int(max(seconds, 0))
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s"


class ConfigMapReporter:
    """PATCHes ``data`` of the progress ConfigMap in a background thread; failures only warn (once)."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        ca_file: str | None = None,
        interval: float = 5.0,
        timeout: float = 2.0,
    ):
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
        )
        self.url = f"{base_url or f'https://{host}:{port}'}/api/v1/namespaces/{namespace}/configmaps/{name}"
        if token is None and (SA_DIR / "token").is_file():
            token = (SA_DIR / "token").read_text().strip()
        self._token, self.interval, self.timeout = token, interval, timeout
        ca = ca_file or (str(SA_DIR / "ca.crt") if (SA_DIR / "ca.crt").is_file() else None)
        self._ssl = ssl.create_default_context(cafile=ca) if self.url.startswith("https") else None
        self._latest: dict[str, str] | None = None
        self._lock, self._wake, self._stop = threading.Lock(), threading.Event(), threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="progress-configmap", daemon=True)
        self._thread.start()

    def update(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._latest = {k: "" if v is None else str(v) for k, v in data.items()}

    def close(self, final: dict[str, Any]) -> None:
        """Post the final state (bounded by the timeout) and stop the thread."""
        self.update(final)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.timeout * 2 + 1)

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            with self._lock:
                data, self._latest = self._latest, None
            if data is not None:
                self._patch(data)
            if stopping:
                return
            self._wake.wait(self.interval)

    def _patch(self, data: dict[str, str]) -> None:
        req = urllib.request.Request(
            self.url,
            data=json.dumps({"data": data}).encode(),
            method="PATCH",
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                resp.read()
            self._warned = False
        except Exception as e:  # never let reporting touch training
            if not self._warned:
                log.warning("progress ConfigMap update failed (%s); training continues", type(e).__name__)
                self._warned = True


class Reporter:
    """What rank 0 tells the world: JSON lines, the metrics file, a tqdm bar, the ConfigMap."""

    def __init__(
        self,
        metrics_file: Path,
        total_steps: int,
        start_step: int,
        configmap: ConfigMapReporter | None = None,
        stream: TextIO | None = None,
    ):
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        self._metrics = metrics_file.open("a", encoding="utf-8")
        self._stream = stream or sys.stdout
        self.total, self.configmap = total_steps, configmap
        self.state: dict[str, Any] = {"step": start_step, "totalSteps": total_steps, "phase": "Running"}
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": now_rfc3339(), **record})
        print(line, file=self._stream, flush=True)
        self._metrics.write(line + "\n")
        self._metrics.flush()
        for key, field in (
            ("step", "step"),
            ("loss", "loss"),
            ("eval_loss", "evalLoss"),
            ("tokens_per_second", "tokensPerSecond"),
            ("checkpoint", "lastCheckpoint"),
        ):
            if key in record:
                self.state[field] = record[key]
        if self._bar is not None and "loss" in record:
            self._bar.n = record["step"]
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=True)
        if self.configmap is not None:
            self.configmap.update({**self.state, "updatedAt": now_rfc3339()})

    def close(self, phase: str) -> None:
        self.state["phase"] = phase
        if self.configmap is not None:
            self.configmap.close({**self.state, "updatedAt": now_rfc3339()})
        if self._bar is not None:
            self._bar.close()
        self._metrics.close()
