"""Exact-match LRU of whole responses to deterministic (greedy or seeded) non-streaming requests."""

from __future__ import annotations

import collections
import copy


class ResponseCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._data: collections.OrderedDict[str, dict] = collections.OrderedDict()

    def get(self, key: str) -> dict | None:
        if key in self._data:
            self._data.move_to_end(key)
            return copy.deepcopy(self._data[key])
        return None

    def put(self, key: str, value: dict) -> None:
        if self.size <= 0:
            return
        self._data[key] = copy.deepcopy(value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)
