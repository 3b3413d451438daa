"""Progress ConfigMap data (written by the trainer, all strings) → ``status.progress`` with an ETA."""

from __future__ import annotations

import contextlib
import datetime
import math
from typing import Any

INTS = {"step", "totalSteps"}
FLOATS = {"loss", "evalLoss", "tokensPerSecond"}
STRINGS = {"lastCheckpoint", "updatedAt"}


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


def format_duration(seconds: float) -> str:
    """1h12m, 3m20s, 45s — what kubectl users expect to read."""
    s = max(0, math.ceil(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


def eta(
    step: int | None,
    total: int | None,
    tokens_per_second: float | None = None,
    tokens_per_step: float | None = None,
    started: datetime.datetime | None = None,
    updated: datetime.datetime | None = None,
) -> str | None:
    """Time left: from tokens/s when the tokens per step are known, else from the mean step rate."""
    if step is None or not total:
        return None
    left = max(0, total - step)
    if left == 0:
        return "0s"
    if tokens_per_second and tokens_per_step:
        return format_duration(left * tokens_per_step / tokens_per_second)
    if started and updated and step > 0 and updated > started:
        return format_duration(left * (updated - started).total_seconds() / step)
    return None


def from_configmap(
    data: dict[str, str] | None,
    tokens_per_step: float | None = None,
    started: str | None = None,
) -> dict[str, Any] | None:
    """``status.progress`` from the ConfigMap's data; None when the trainer has written nothing yet."""
    if not data:
        return None
    out: dict[str, Any] = {}
    for key in INTS:
        with contextlib.suppress(KeyError, ValueError):
            out[key] = int(float(data[key]))
    for key in FLOATS:
        try:
            value = float(data[key])
        except (KeyError, ValueError):
            continue
        if math.isfinite(value):
            out[key] = round(value, 6)
    for key in STRINGS:
        if data.get(key):
            out[key] = data[key]
    if not out:
        return None
    left = eta(
        out.get("step"),
        out.get("totalSteps"),
        out.get("tokensPerSecond"),
        tokens_per_step,
        _parse_time(started),
        _parse_time(out.get("updatedAt")),
    )
    if left is not None:
        out["eta"] = left
    if "step" in out:
        out["summary"] = f"{out['step']}/{out['totalSteps']}" if "totalSteps" in out else str(out["step"])
    return out
