"""`python -m llmops_serve --model LOCATION ...`: run the server with graceful drain on SIGTERM.

uvicorn's own SIGTERM handling closes the listening socket at once (so /ready could never report
503) and re-raises the signal on exit (exit code 143). We instead mark the server draining (/ready
and new requests get 503 with Retry-After), let requests in flight finish for up to
--drain-timeout seconds, then stop uvicorn and exit 0.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle intra-op workers sleep instead of spinning. The event loop thread
# shares the cores with them, and on a busy node spinning workers starved it and each other (a
# decode step took 10-20x its time; see docs/benchmarks-serve.md). An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import logging
import sys
import threading
import time
from types import FrameType

import uvicorn
from pydantic import ValidationError

from llmops_serve.app import create_app
from llmops_serve.settings import Settings, parse_args
from llmops_serve.state import State

log = logging.getLogger("llmops_serve")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "status"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(fmt))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: State, drain_timeout: float) -> None:
        super().__init__(config)
        self.state, self.drain_timeout = state, drain_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.draining:  # a second signal: stop now
            self.should_exit = self.force_exit = True
            return
        log.info(
            "signal %s: draining (up to %.0fs for %d requests in flight)",
            sig,
            self.drain_timeout,
            self.state.inflight,
        )
        self.state.draining = True
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        end = time.monotonic() + self.drain_timeout
        while self.state.inflight > 0 and time.monotonic() < end:
            time.sleep(0.05)
        if self.state.inflight:
            log.warning("drain timeout: %d requests still in flight", self.state.inflight)
        self.should_exit = True

    def fail(self) -> None:
        """Model load failed: stop serving so the pod restarts (exit code 1 from main)."""
        self.should_exit = True


def serve(settings: Settings) -> int:
    app = create_app(settings)
    state: State = app.state.llmops
    # loop and http stay "auto": uvicorn takes uvloop and httptools (both in the serve extra), which
    # leave the engine thread more of the GIL than asyncio and the pure-Python h11 (they raised tokens/s
    # at concurrency 16 by about a fifth; docs/benchmarks-serve.md).
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    config.load()
    log.info(
        "http %s, event loop %s",
        config.http_protocol_class.__module__.rsplit(".", 1)[-1],
        config.get_loop_factory().__module__.split(".", 1)[0],
    )
    server = DrainingServer(config, state, settings.drain_timeout)
    app.state.on_load_failure = server.fail
    server.run()
    return 1 if state.load_error else 0


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_args(argv)
    except ValidationError as exc:  # a bad flag or LLMOPS_* value: say which, without a traceback
        for err in exc.errors():
            print(f"llmops_serve: {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    setup_logging(settings.log_json)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
