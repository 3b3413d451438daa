"""``--wait``: follow resources until each settles, with a live view; the exit code is the outcome.

A job settles when it Succeeds or Fails, an endpoint when it is Ready; an invalid spec or a failed
source job fails at once. On a terminal the view redraws in place (rich Live); elsewhere (CI logs) a
line is printed only when a resource's phase, progress or message changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .errors import FAILED, OK, TIMEOUT
from .kube import Kind
from .summary import FAILED as OUTCOME_FAILED
from .summary import SUCCEEDED, Summary, summarize

Ref = tuple[Kind, str, str]  # kind, namespace, name


def conditions(obj: dict[str, Any] | None) -> str:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return " ".join(f"{c['type']}={c['status']}" for c in conds if "type" in c and "status" in c)


def poll(
    cluster: Any,
    refs: list[Ref],
    timeout: float,
    show: Callable[[list[tuple[Summary, str]]], None],
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, list[Summary]]:
    """Poll until every resource succeeded (0), any failed (1) or ``timeout`` passed (3)."""
    deadline = clock() + timeout
    while True:
        rows = []
        for kind, ns, name in refs:
            obj = cluster.get(kind, ns, name)
            if obj is None:
                gone = {"kind": kind.kind, "metadata": {"namespace": ns, "name": name},
                        "status": {"phase": "Deleted"}}  # fmt: skip
                rows.append((replace(summarize(gone), outcome=OUTCOME_FAILED, message="deleted"), ""))
            else:
                rows.append((summarize(obj), conditions(obj)))
        show(rows)
        summaries = [s for s, _ in rows]
        if any(s.outcome == OUTCOME_FAILED for s in summaries):
            return FAILED, summaries
        if all(s.outcome == SUCCEEDED for s in summaries):
            return OK, summaries
        if clock() >= deadline:
            return TIMEOUT, summaries
        sleep(interval)


def live_table(rows: list[tuple[Summary, str]]) -> Any:
    from rich.table import Table

    t = Table(box=None, header_style="bold", pad_edge=False)
    for h in ("RESOURCE", "PHASE", "PROGRESS", "LOSS", "ETA", "CONDITIONS", "MESSAGE"):
        t.add_column(h, overflow="fold")
    for s, conds in rows:
        t.add_row(f"{s.kind.lower()}/{s.name}", s.phase, s.progress, s.loss, s.eta, conds, s.message)
    return t


class View:
    """Draws the rows: in place on a terminal, as change lines elsewhere."""

    def __init__(self, console: Any) -> None:
        self.console, self.live, self.last = console, None, {}

    def __enter__(self) -> View:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, rows: list[tuple[Summary, str]]) -> None:
        if self.live is not None:
            self.live.update(live_table(rows))
            return
        for s, _ in rows:
            key = f"{s.kind.lower()}/{s.name}"
            line = f"{key} {s.phase} {s.progress}" + (f" loss {s.loss}" if s.loss != "-" else "")
            line += f" eta {s.eta}" if s.eta != "-" else ""
            line += f" ({s.message})" if s.message else ""
            if self.last.get(key) != line:
                self.console.print(line, soft_wrap=True, highlight=False)
                self.last[key] = line
