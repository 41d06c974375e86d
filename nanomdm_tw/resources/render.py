"""
The one adapter between ``async def`` handlers and twisted.web's ``render_*``.

Returning a Deferred from ``render_*`` is a 500 in twisted.web, so every
handler goes through ``async_render``: it answers NOT_DONE_YET, writes the
handler's bytes when they come, maps HTTPStatusError to its status, turns
anything unexpected into a logged 500, cancels the handler when the client
goes away, and logs and counts (metrics) one event per request.

Most handlers never wait (in-memory storage, cached answers): the adapter
runs the coroutine's first step itself and, when it is already done,
answers at once without a Deferred.  Only a handler that waits is wrapped
with ``Deferred.fromCoroutine``, which resumes it where it stopped.
"""

import functools
import json
import time
from collections.abc import Awaitable, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..errors import HTTPStatusError, StorageBusy
from ..logs import make_logger
from ..mdm.request import new_trace_id
from ..metrics import server_metrics
from .body import LimitedRequest

_log = make_logger("nanomdm_tw.request")

# The request log line, formatted here by str.format: twisted.logger's own
# formatter (pure Python, per field) cost several times more per request.
# The event keeps every field for JSON observers.
REQUEST_LINE = (
    "{method} {path} {status} {outcome} enrollment_id={enrollment_id}"
    " trace_id={trace_id} {duration_ms:.1f}ms"
)

Handler = Callable[[object, Request], Awaitable[bytes | None]]


class _Answer:
    """Writes one request's answer (or error) and its log line."""

    __slots__ = ("request", "started", "gone", "waiting")

    def __init__(self, request: Request):
        self.request = request
        self.started = time.monotonic()
        self.gone = False
        self.waiting: Deferred | None = None
        request.nanomdm_context = {"trace_id": new_trace_id(), "enrollment_id": "-"}

    def write(self, body: bytes | None) -> None:
        if self.gone:
            return
        if body:
            self.request.write(body)
        self.request.finish()

    def fail(self, failure: Failure) -> None:
        if self.gone or failure.check(CancelledError):
            return
        request = self.request
        error = failure.value
        if isinstance(error, StorageBusy):
            self.busy(error)
            return
        if isinstance(error, HTTPStatusError):
            request.nanomdm_context.setdefault("error", str(error))
            request.setResponseCode(error.status)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.write(str(error).encode("utf-8") + b"\n")
            return
        _log.failure(
            "unhandled error trace_id={trace_id}",
            failure,
            trace_id=request.nanomdm_context["trace_id"],
        )
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.write(b"internal server error\n")

    def busy(self, error: StorageBusy) -> None:
        """503 with Retry-After: a device tries again later; API clients read JSON."""
        request = self.request
        request.nanomdm_context["error"] = str(error)
        request.setResponseCode(error.status)
        request.setHeader(b"retry-after", str(error.retry_after).encode("ascii"))
        if getattr(request, "answers_json", False):
            request.setHeader(b"content-type", b"application/json")
            self.write(json.dumps({"error": str(error)}, indent="\t").encode("utf-8") + b"\n")
        else:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.write(str(error).encode("utf-8") + b"\n")

    def wait_for(self, result: Deferred) -> None:
        """The handler is waiting: answer when it is done, cancel it if the client goes."""
        self.waiting = result
        self.request.notifyFinish().addCallbacks(self.log, self.client_gone)
        result.addCallbacks(self.write, self.fail)

    def client_gone(self, failure: Failure) -> None:
        self.gone = True
        self.waiting.cancel()
        self.log()

    def log(self, _: object = None) -> None:
        status = self.request.code if not self.gone else "disconnected"
        log_answer(self.request, status, time.monotonic() - self.started)


def log_answer(request: Request, status: int | str, seconds: float) -> None:
    """The request's one log event, and its count in the metrics."""
    context = request.nanomdm_context
    server_metrics().request_answered(request, status, seconds)
    fields = dict(
        method=request.method.decode("ascii", "replace"),
        path=request.path.decode("utf-8", "replace"),
        status=status,
        outcome=context.get("error") or context.get("outcome", "-"),
        enrollment_id=context["enrollment_id"],
        trace_id=context["trace_id"],
        duration_ms=seconds * 1000,
    )
    _log.info("{request_line}", request_line=REQUEST_LINE.format(**fields), **fields)


def log_plain_answer(request: Request) -> None:
    """
    The event for a request answered outside ``async_render`` (a 401 from
    the API guard, a 404, a 405, the console's files), once it finished.
    """
    if hasattr(request, "nanomdm_context") or not isinstance(request, LimitedRequest):
        return  # async_render's own (it logs when the answer is written), or not ours
    request.nanomdm_context = {
        "trace_id": new_trace_id(),
        "enrollment_id": "-",
        "outcome": request.code_message.decode("ascii", "replace").lower(),
    }
    log_answer(request, request.code, time.monotonic() - request.arrived)


def async_render(handler: Handler) -> Callable[[object, Request], object]:
    @functools.wraps(handler)
    def render(resource: object, request: Request) -> object:
        answer = _Answer(request)
        coroutine = handler(resource, request)
        try:
            coroutine.send(None)  # its first step, up to the first wait
        except StopIteration as done:
            answer.write(done.value)
        except BaseException:
            answer.fail(Failure())
        else:
            answer.wait_for(Deferred.fromCoroutine(coroutine))
            return NOT_DONE_YET
        answer.log()
        return NOT_DONE_YET

    return render
