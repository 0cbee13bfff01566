"""A bounded map for what a Lambda container remembers between requests."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A thread-safe map that forgets its least recently used key beyond ``limit`` keys
    (the dev server and the sidecar's callers are threaded), so what a client can make it
    hold costs bounded memory."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._put(key, value)

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The value at ``key``, or ``make()``'s, stored there: one of two threads asking
        at once makes it, and both get that one."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                value = make()
            self._put(key, value)
            return value

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def _put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)
