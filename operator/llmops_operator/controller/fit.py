"""The fit check at admission: a resource whose memory estimate exceeds its accelerators is reported,
or refused, before any pod is scheduled.

The estimate is ``llmops_core.estimate.check_fit``, the same one ``llmops validate`` and ``llmops
estimate`` use. It runs once per generation: the ``FitsAccelerators`` condition carries the generation
it was computed for, and later passes of that generation read it back. Paths in a spec are paths in the
pod, so the operator never reads them (``local_files=False``): a local model it cannot size is
not checked.
"""

from __future__ import annotations

from typing import Any

from llmops_core import api
from llmops_core.estimate import check_fit

from . import conditions

CONDITION = "FitsAccelerators"
MISFIT = "InsufficientAcceleratorMemory"
Verdict = tuple[bool, str, str]


def verdict(body: dict[str, Any], resource: api.Resource) -> Verdict:
    """(fits, reason, message) for this generation of ``resource``."""
    gen = body["metadata"].get("generation")
    old = conditions.get((body.get("status") or {}).get("conditions") or [], CONDITION)
    if old and old.get("observedGeneration") == gen:
        return old.get("status") == "True", old.get("reason", ""), old.get("message", "")
    finding = check_fit(resource, local_files=False)
    if finding is None:
        return True, "Fits", "the memory estimate fits the listed instance types (or cannot be made offline)"
    return False, MISFIT, finding.message


def condition(fits: Verdict | None) -> dict[str, Verdict]:
    """The ``FitsAccelerators`` condition to set, if the check ran."""
    return {CONDITION: fits} if fits is not None else {}


def is_news(body: dict[str, Any], fits: Verdict | None) -> bool:
    """A misfit not reported yet for this generation (worth a Warning Event)."""
    if fits is None or fits[0]:
        return False
    old = conditions.get((body.get("status") or {}).get("conditions") or [], CONDITION) or {}
    return old.get("status") != "False" or old.get("observedGeneration") != body["metadata"].get("generation")
