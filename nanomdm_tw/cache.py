"""
The one in-memory cache every per-process cache is made of: bounded in
entries, least recently used out first, each entry forgotten a fixed time
after it was stored.

Several server processes (``--workers``, or several servers) share one
database, and each keeps its own caches: only an expiry lets a change made
through another process (an association deleted, a push cert replaced)
reach this one.  The time runs from when an entry was stored, not from its
last use: a use does not make what was read from the database any truer.
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")

FOREVER = float("inf")


class WallClock:
    """``IReactorTime.seconds`` without a reactor, for code that may run before one exists."""

    def seconds(self) -> float:
        return time.time()


WALL_CLOCK = WallClock()


class LRUCache(Generic[Key, Value]):
    """
    At most ``size`` entries, each forgotten ``ttl`` seconds after ``put``
    (never when ``ttl`` is None: for values that are a function of their key).

    ``clock`` (an ``IReactorTime``, e.g. a ``task.Clock`` in tests) tells
    the time.  ``on_evict(value)`` is called for an entry the cache lets go
    of by itself (full or expired), so a value holding a connection can
    close it; ``pop`` hands the value back instead.
    """

    __slots__ = ("_entries", "_size", "_ttl", "_clock", "_on_evict")

    def __init__(
        self,
        size: int,
        ttl: float | None = None,
        clock=None,
        on_evict: Callable[[Value], None] | None = None,
    ):
        if size < 1:
            raise ValueError("a cache holds at least one entry")
        self._entries: OrderedDict[Key, tuple[float, Value]] = OrderedDict()
        self._size = size
        self._ttl = FOREVER if ttl is None else ttl
        self._clock = clock or WALL_CLOCK
        self._on_evict = on_evict

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Value | None:
        """The value stored for ``key``, unless it expired (then it is forgotten)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.seconds():
            del self._entries[key]
            self._evicted(entry[1])
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Key, value: Value, until: float = FOREVER) -> None:
        """Store ``value``; it expires after the TTL, or at ``until`` if sooner."""
        expires = min(self._clock.seconds() + self._ttl, until)
        entries = self._entries
        entries[key] = (expires, value)
        entries.move_to_end(key)
        if len(entries) > self._size:
            self._evicted(entries.popitem(last=False)[1][1])

    def pop(self, key: Key) -> Value | None:
        """Forget ``key``; its value (expired or not), if there was one."""
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def values(self) -> list[Value]:
        return [value for _, value in self._entries.values()]

    def _evicted(self, value: Value) -> None:
        if self._on_evict is not None:
            self._on_evict(value)
