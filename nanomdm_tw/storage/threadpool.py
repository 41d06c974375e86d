"""
The threads an adbapi pool runs its interactions on.

Twisted's ThreadPool hands every task to one idle thread through that
thread's own queue, so every query wakes a sleeping thread (two context
switches, and a wait for the GIL) and passes through several layers of
Python on the reactor thread.  Here the threads take tasks from one shared
queue: a thread that finishes a task takes the next without sleeping while
work is waiting, and handing over a task is one ``SimpleQueue.put``.
Threads are started as work needs them, up to the pool's maximum, as
Twisted's are; each keeps its adbapi connection.
"""

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

_STOP = None


class SharedQueueThreadPool:
    """What of ``twisted.python.threadpool.ThreadPool`` adbapi uses, on one shared queue."""

    _log = Logger()

    def __init__(self, minthreads: int, maxthreads: int, name: str = "adbapi"):
        self.min = minthreads
        self.max = maxthreads
        self.name = name
        self.started = False
        self.threads: list[threading.Thread] = []
        self._queue: SimpleQueue = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting on the queue
        self._waiting = 0  # tasks queued and not yet taken

    def start(self) -> None:
        self.started = True
        for _ in range(max(self.min, min(self._waiting, self.max))):
            self._start_thread()

    def stop(self) -> None:
        """Let queued tasks finish, then end every thread."""
        self.started = False
        for _ in self.threads:
            self._queue.put(_STOP)
        for thread in self.threads:
            thread.join()
        self.threads = []

    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.callInThreadWithCallback(None, func, *args, **kw)

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """Run ``func`` in a pool thread; ``onResult(ok, result or Failure)`` there after."""
        with self._lock:
            self._waiting += 1
            grow = self.started and self._waiting > self._idle and len(self.threads) < self.max
        if grow:
            self._start_thread()
        self._queue.put((onResult, func, args, kw))

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self.name}-{len(self.threads)}", daemon=True
        )
        self.threads.append(thread)
        thread.start()

    def _work(self) -> None:
        queue, lock = self._queue, self._lock
        while True:
            with lock:
                self._idle += 1
            task = queue.get()
            if task is _STOP:
                return
            with lock:
                self._idle -= 1
                self._waiting -= 1
            onResult, func, args, kw = task
            task = None
            try:
                result = func(*args, **kw)
                ok = True
            except BaseException:
                result = Failure()
                ok = False
            if onResult is not None:
                onResult(ok, result)
            elif not ok:
                self._log.failure("unhandled error in a pool thread", result)
            result = onResult = func = args = kw = None
