"""Progress reporting: ConfigMap PATCHes with the service-account token; an unreachable API costs nothing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from llmops_train.progress import ConfigMapReporter, Reporter, format_eta


class _FakeApi(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, dict, str | None]] = []

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(
            (self.path, self.headers["Content-Type"], body, self.headers.get("Authorization"))
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_reporter_patches_the_configmap_and_writes_json_lines(tmp_path: Path, capsys) -> None:
    server = HTTPServer(("127.0.0.1", 0), _FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cm = ConfigMapReporter(
            "job-progress",
            "ns1",
            base_url=f"http://127.0.0.1:{server.server_port}",
            token="sekret",
            interval=0.05,
        )
        rep = Reporter(tmp_path / "m" / "metrics.jsonl", total_steps=10, start_step=0, configmap=cm)
        rep.log({"step": 1, "loss": 2.5, "tokens_per_second": 100.0})
        time.sleep(0.3)
        rep.log({"step": 2, "loss": 2.0, "eval_loss": 2.2})
        rep.log({"event": "checkpoint", "step": 2, "checkpoint": "/ck/step-00000002"})
        rep.close("Succeeded")
    finally:
        server.shutdown()
    reqs = _FakeApi.requests
    assert reqs and all(r[0] == "/api/v1/namespaces/ns1/configmaps/job-progress" for r in reqs)
    assert all(r[1] == "application/merge-patch+json" and r[3] == "Bearer sekret" for r in reqs)
    final = reqs[-1][2]["data"]
    assert all(isinstance(v, str) for v in final.values())
    assert final["step"] == "2" and final["totalSteps"] == "10" and final["loss"] == "2.0"
    assert final["evalLoss"] == "2.2" and final["tokensPerSecond"] == "100.0"
    assert final["lastCheckpoint"] == "/ck/step-00000002" and final["phase"] == "Succeeded"
    assert final["updatedAt"].endswith("Z")
    lines = [json.loads(x) for x in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [x.get("step") for x in lines] == [1, 2, 2]
    assert capsys.readouterr().out.count("\n") == 3


def test_an_unreachable_api_never_blocks(tmp_path: Path) -> None:
    cm = ConfigMapReporter("p", "ns", base_url="http://127.0.0.1:1", token="t", interval=0.01, timeout=0.5)
    rep = Reporter(tmp_path / "metrics.jsonl", total_steps=1000, start_step=0, configmap=cm)
    start = time.perf_counter()
    for step in range(1000):
        rep.log({"step": step, "loss": 1.0})
    assert time.perf_counter() - start < 2.0
    rep.close("Failed")
    assert time.perf_counter() - start < 5.0


def test_eta_format() -> None:
    assert format_eta(4332) == "1h12m" and format_eta(75) == "1m15s" and format_eta(-3) == "0m00s"
