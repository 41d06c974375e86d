"""
``/metrics``, ``/healthz`` and ``/readyz``: for Prometheus and for probes.

Unauthenticated and cheap.  ``/healthz`` answers as long as the process
serves; ``/readyz`` only once storage is open and answers ``ping()``, with
a 503 and a short reason otherwise: within ``timeout`` seconds even when
the database is black-holed, since a probe waits on no thread.  However
many probes come, one ping at a time runs; they all wait for it.  Details
of a failure go to the log, not to the unauthenticated answer.
"""

from collections.abc import Callable

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..metrics import server_metrics
from ..metrics.processes import exposition, multiprocess_folder
from ..storage.interfaces import IStorage
from .render import async_render

# Seconds a readiness probe waits for storage before answering 503.
READY_TIMEOUT = 2.0
TEXT = b"text/plain; charset=utf-8"


class MetricsResource(Resource):
    isLeaf = True

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        server_metrics()  # every family listed, even before its first count
        if multiprocess_folder() is None:
            body, content_type = exposition()
        else:  # reads every process's files
            body, content_type = await deferToThread(exposition)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body


class HealthResource(Resource):
    """The process is up and its reactor turns."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", TEXT)
        return b"ok\n"


class Readiness:
    """
    Whether storage answers: for ``/readyz`` and the console's overview alike,
    one ping at a time however many ask.
    """

    _log = Logger()

    def __init__(
        self, storage: Callable[[], IStorage | None], clock=None, timeout: float = READY_TIMEOUT
    ):
        """
        ``storage``: the open storage, or None while the server is still
        starting; ``clock``: the global reactor unless given.
        """
        if clock is None:
            from twisted.internet import reactor as clock
        self._storage = storage
        self._clock = clock
        self._timeout = timeout
        self._waiting: list[Deferred] | None = None  # None: no ping running
        self._ready = True  # as last reported: the log notes changes only

    async def not_ready_because(self) -> str | None:
        """None when storage answered within the timeout, else a short reason."""
        storage = self._storage()
        if storage is None:
            return "starting: storage not open yet"
        answered = self._join_ping(storage)
        answered.addTimeout(self._timeout, self._clock)
        try:
            await answered
        except TimeoutError:
            return self._not_ready(f"storage did not answer within {self._timeout:g}s")
        except Exception as e:
            return self._not_ready("storage unreachable", str(e) or type(e).__name__)
        if not self._ready:
            self._ready = True
            self._log.info("ready: storage answers again")
        return None

    def _not_ready(self, reason: str, detail: str = "") -> str:
        if self._ready:
            self._ready = False
            self._log.warn("not ready: {reason} {detail}", reason=reason, detail=detail)
        return reason

    def _join_ping(self, storage: IStorage) -> Deferred:
        """Fires when the running ping (started now if none is) answers."""
        waiter: Deferred = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]
        Deferred.fromCoroutine(self._ping(storage)).addBoth(self._pinged)  # may fire at once
        return waiter

    @staticmethod
    async def _ping(storage: IStorage) -> None:
        """Even an error raised before ping() returns arrives as a failure."""
        await storage.ping()

    def _pinged(self, result: object) -> None:
        waiting, self._waiting = self._waiting, None
        for waiter in waiting:
            if not waiter.called:  # else timed out already
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)


class ReadinessResource(Resource):
    isLeaf = True

    def __init__(self, readiness: Readiness):
        super().__init__()
        self._readiness = readiness

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        reason = await self._readiness.not_ready_because()
        request.setHeader(b"content-type", TEXT)
        if reason is None:
            return b"ok\n"
        request.setResponseCode(503)
        return reason.encode("utf-8") + b"\n"


def observability(readiness: Readiness) -> dict[bytes, Resource]:
    """The three resources by path segment, for the main root or a listener of their own."""
    return {
        b"metrics": MetricsResource(),
        b"healthz": HealthResource(),
        b"readyz": ReadinessResource(readiness),
    }
