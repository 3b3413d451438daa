"""What both reconcilers share: reading objects, reporting invalid or stalled resources, announcing."""

from __future__ import annotations

from typing import Any

import kopf

from llmops_core import api

from . import cache, children, conditions, events, kube, status
from .settings import TUNABLES


class Outcome(Exception):
    """A reconcile that must stop here; the kopf handler turns it into kopf's error of the same kind."""

    def __init__(self, message: str, permanent: bool, delay: float = 0) -> None:
        super().__init__(message)
        self.permanent, self.delay = permanent, delay

    def to_kopf(self) -> Exception:
        if self.permanent:
            return kopf.PermanentError(str(self))
        return kopf.TemporaryError(str(self), delay=self.delay)


TRANSIENT = {409, 429, 500, 502, 503, 504}  # conflicts, throttling, an API server briefly unwell


class Problems:
    """What a pass could not do to some children, without stopping the rest or the status.

    A same-named object we do not own, or a write the API server refuses for good (403, 422), is a
    fact to report on the parent; every other child, and the status, still get their turn.
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (reason, message)

    def add(self, reason: str, message: str) -> None:
        self.items.append((reason, message))

    def condition(self) -> tuple[str, str] | None:
        """(reason, message) of the first problem, with a count of the rest."""
        if not self.items:
            return None
        reason, message = self.items[0]
        more = len(self.items) - 1
        return reason, message + (f" (and {more} more)" if more else "")


async def ensure_child(
    child: dict[str, Any],
    problems: Problems,
    *,
    verify: bool,
    create_only: bool = False,
    initial: tuple[str, ...] = (),
) -> tuple[str, dict[str, Any] | None]:
    """``children.ensure``, with refusals recorded in ``problems`` instead of raised."""
    try:
        return await children.ensure(
            child, cache.current(child, verify), verify=verify, create_only=create_only, initial=initial
        )
    except children.NotOurs as e:
        problems.add("NameConflict", str(e))
    except kube.ApiError as e:
        if e.status in TRANSIENT:
            raise
        problems.add("ApplyFailed", f"{child['kind']}/{child['metadata']['name']}: {e}")
    return "failed", None


async def handle(body: kopf.Body, reconcile: Any, **options: bool) -> None:
    """Every create/update handler: note the object, reconcile it, map the outcome for kopf.

    A transient API error retries the handler after ``error_backoff_seconds`` rather than kopf's
    default of 60 s: what the pass already wrote stays, so the retry only finishes the rest.
    """
    cache.remember(dict(body))
    try:
        await reconcile(body.metadata.namespace, body.metadata.name, **options)
    except Outcome as e:
        raise e.to_kopf() from None
    except kube.ApiError as e:
        if e.status not in TRANSIENT:
            raise
        raise kopf.TemporaryError(str(e), delay=TUNABLES.error_backoff_seconds) from e


def clean(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stored object that the API models read."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)},
        "spec": body.get("spec") or {},
    }


async def fetch(api_version: str, plural: str, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    """From the watch cache, else from the API."""
    obj = cache.seen(api_version, kind, ns, name)
    if obj is None:
        obj = await kube.get(kube.path(api_version, plural, ns, name))
        if obj is not None:
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
        cache.remember(obj)
    return obj


async def load_parent(
    api_version: str, plural: str, kind: str, ns: str, name: str
) -> tuple[dict[str, Any], api.Resource] | None:
    """The parent and its validated model; None when it is gone, being deleted, or invalid (reported)."""
    body = await fetch(api_version, plural, kind, ns, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        return body, api.load(clean(body))
    except api.SpecError as e:
        await invalid(body, e)
        return None


async def invalid(body: dict[str, Any], error: api.SpecError) -> None:
    """Stalled=True, reason InvalidSpec, the message naming each field; then stop (no retries)."""
    message = "; ".join(f"{i.path}: {i.message}" for i in error.issues)
    gen = body["metadata"].get("generation")
    old = body.get("status") or {}
    new = {
        "observedGeneration": gen,
        "phase": "Invalid",
        "conditions": status.with_conditions(
            old,
            gen,
            Ready=(False, "InvalidSpec", message),
            Reconciling=(False, "InvalidSpec", "fix the spec; nothing is retried until it changes"),
            Stalled=(True, "InvalidSpec", message),
        ),
    }
    if await status.write(body, new):
        events.post(body, "Invalid", message, warning=True)
    raise Outcome(message, permanent=True)


async def stalled(
    body: dict[str, Any],
    reason: str,
    message: str,
    extra: dict[str, Any] | None = None,
    **more: tuple[bool | str, str, str],
) -> None:
    """Stalled=True (and Ready=False unless it was ready), with ``more`` conditions set alongside."""
    gen = body["metadata"].get("generation")
    old = body.get("status") or {}
    new = {
        "observedGeneration": gen,
        "conditions": status.with_conditions(
            old, gen, Stalled=(True, reason, message), Reconciling=(False, reason, message), **more
        ),
        **(extra or {}),
    }
    if not conditions.is_true(old.get("conditions") or [], "Ready"):
        new["conditions"] = status.with_conditions(new, gen, Ready=(False, reason, message))
    if await status.write(body, new):
        events.post(body, reason, message, warning=True)


def spec_moved_on(body: dict[str, Any]) -> bool:
    """A parent we reconciled before (it has our status) whose spec has changed since: an update made
    while the operator was down, or one a child's event reached before kopf's update handler did."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and observed != (body.get("metadata") or {}).get("generation")


def announce(body: dict[str, Any], actions: dict[str, str], spec_changed: bool) -> None:
    """Events for the children this pass created, updated (spec change) or repaired (drift: edited,
    or deleted and made again, after the parent's first pass)."""
    repair = not (spec_changed or spec_moved_on(body))
    for verb in ("created", "updated", "deleted"):
        done = [k for k, a in actions.items() if a == verb]
        if not done:
            continue
        if repair and verb == "updated":
            events.post(body, "Repaired", f"repaired {', '.join(done)}")
        elif repair and verb == "created" and body.get("status"):
            events.post(body, "Repaired", f"recreated {', '.join(done)}")
        else:
            events.post(body, verb.capitalize(), f"{verb} {', '.join(done)}")
