"""Which namespaces this operator serves: every one (the default) or a list; set once by ``run``."""

from __future__ import annotations

NAMESPACES: list[str] = []  # empty: cluster-wide


def set_namespaces(namespaces: list[str]) -> None:
    NAMESPACES[:] = namespaces


def namespaces() -> list[str | None]:
    """Each namespace to list and watch in; [None] means one cluster-wide list/watch."""
    return list(NAMESPACES) or [None]
