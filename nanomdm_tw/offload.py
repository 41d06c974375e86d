"""
Work on big device data, done in threads of its own so the reactor keeps serving.

Decoding a plist, base64- and JSON-encoding a webhook event, dumping a
body: each costs time in proportion to the body.  A 20 MB
InstalledApplicationList report takes seconds to decode; on the reactor
thread every other device and API request would wait that long.

Bodies up to ``threshold`` bytes (nearly every message) are handled on the
reactor as before: handing work to a thread costs more than decoding a
check-in.  Bigger ones go to a small pool of their own, not the database's,
so that big bodies never hold the threads SQL needs, and at most
``threads`` of them are worked on at once; the others wait in the pool's
queue (their bytes are already in memory, bounded by the body limit).
The pool is started and stopped with the server.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

from .storage.threadpool import SharedQueueThreadPool

DEFAULT_THRESHOLD = 256 * 1024
# Decoding holds the GIL most of its time: more threads would not decode
# faster, only take more turns from the reactor thread.  Two, so that one
# long decode does not hold up the hashing of the next body (hashlib lets
# go of the GIL) or a webhook event's encoding.
DEFAULT_THREADS = 2

Result = TypeVar("Result")


class Offload:
    def __init__(
        self, reactor=None, threshold: int = DEFAULT_THRESHOLD, threads: int = DEFAULT_THREADS
    ):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.threshold = threshold
        self.pool = SharedQueueThreadPool(0, threads, name="offload")

    def is_big(self, size: int) -> bool:
        return size > self.threshold

    def run(self, work: Callable[..., Result], *args: Any) -> "Deferred[Result]":
        """``work(*args)`` in a pool thread; its result (or failure) on the reactor."""
        return deferToThreadPool(self._reactor, self.pool, work, *args)

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        """Let the work already handed over finish, then end the threads."""
        self.pool.stop()


def run_if_big(
    offload: Offload | None, size: int, work: Callable[..., Result], *args: Any
) -> "Deferred[Result]":
    """``work(*args)`` in the pool when ``size`` is big, else at once (so without an Offload)."""
    if offload is not None and offload.is_big(size):
        return offload.run(work, *args)
    return maybeDeferred(work, *args)
