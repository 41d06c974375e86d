"""
The one in-memory cache every per-process cache is made of: bounded in
entries (and bytes, where a client chooses the size of what is kept), least
recently used out first, each entry forgotten a fixed time after it was stored.

Several server processes (``--workers``, or several servers) share one
database, and each keeps its own caches: only an expiry lets a change made
through another process (an association deleted, a push cert replaced)
reach this one.  The time runs from when an entry was stored, not from its
last use: a use does not make what was read from the database any truer.
"""

import functools
import threading
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
    With ``max_bytes``, the ``weight`` of the entries (what ``put`` says
    each holds, in bytes) stays within it too.

    ``clock`` (an ``IReactorTime``, e.g. a ``task.Clock`` in tests) tells
    the time.  ``on_evict(value)`` is called for an entry the cache lets go
    of by itself (full or expired), so a value holding a connection can
    close it; ``pop`` hands the value back instead.

    Safe to share with threads (as functools.lru_cache is): the signature
    caches may be used by a request decoded off the reactor thread.
    """

    __slots__ = (
        "_entries", "_size", "_ttl", "_clock", "_on_evict", "_max_bytes", "_bytes", "_lock"
    )  # fmt: skip

    def __init__(
        self,
        size: int,
        ttl: float | None = None,
        clock=None,
        on_evict: Callable[[Value], None] | None = None,
        max_bytes: float = FOREVER,
    ):
        if size < 1:
            raise ValueError("a cache holds at least one entry")
        # key -> (expiry time, value, weight)
        self._entries: OrderedDict[Key, tuple[float, Value, int]] = OrderedDict()
        self._size = size
        self._ttl = FOREVER if ttl is None else ttl
        self._clock = clock or WALL_CLOCK
        self._on_evict = on_evict
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held_bytes(self) -> int:
        """The weight of the entries held."""
        return self._bytes

    def get(self, key: Key) -> Value | None:
        """The value stored for ``key``, unless it expired (then it is forgotten)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] > self._clock.seconds():
                self._entries.move_to_end(key)
                return entry[1]
            self._forget(key)
        self._evicted(entry[1])
        return None

    def put(self, key: Key, value: Value, until: float = FOREVER, weight: int = 0) -> None:
        """Store ``value``; it expires after the TTL, or at ``until`` if sooner."""
        if weight > self._max_bytes:
            return  # would push out everything else
        expires = min(self._clock.seconds() + self._ttl, until)
        evicted = []
        with self._lock:
            entries = self._entries
            self._forget(key)
            entries[key] = (expires, value, weight)
            self._bytes += weight
            while len(entries) > self._size or self._bytes > self._max_bytes:
                evicted.append(self._forget(next(iter(entries))))
        for old in evicted:
            self._evicted(old)

    def pop(self, key: Key) -> Value | None:
        """Forget ``key``; its value (expired or not), if there was one."""
        with self._lock:
            return self._forget(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def values(self) -> list[Value]:
        with self._lock:
            return [entry[1] for entry in self._entries.values()]

    def _forget(self, key: Key) -> Value | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry[2]
        return entry[1]

    def _evicted(self, value: Value) -> None:
        if self._on_evict is not None:
            self._on_evict(value)


def memoize(size: int, max_bytes: int) -> Callable[[Callable], Callable]:
    """
    Remember a function of ``bytes`` arguments by them, in an LRUCache
    weighed by their length: a client choosing the bytes (a signature's
    certificates, say) cannot make the cache hold more than ``max_bytes``.
    """

    def decorate(function: Callable) -> Callable:
        cache: LRUCache = LRUCache(size, max_bytes=max_bytes)

        @functools.wraps(function)
        def memoized(*args: bytes):
            value = cache.get(args)
            if value is None:
                value = function(*args)
                cache.put(args, value, weight=sum(map(len, args)))
            return value

        memoized.cache = cache
        return memoized

    return decorate
