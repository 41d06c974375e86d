"""
The one adapter between ``async def`` handlers and twisted.web's ``render_*``.

Returning a Deferred from ``render_*`` is a 500 in twisted.web, so every
handler goes through ``async_render``: it answers NOT_DONE_YET, writes the
handler's bytes when they come, maps HTTPStatusError to its status, turns
anything unexpected into a logged 500, cancels the handler when the client
goes away, and logs one event per request.
"""

import functools
import time
from collections.abc import Awaitable, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..errors import HTTPStatusError
from ..logs import make_logger
from ..mdm.request import new_trace_id

_log = make_logger("nanomdm_tw.request")

# The request log line, formatted here by str.format: twisted.logger's own
# formatter (pure Python, per field) cost several times more per request.
# The event keeps every field for JSON observers.
REQUEST_LINE = (
    "{method} {path} {status} {outcome} enrollment_id={enrollment_id}"
    " trace_id={trace_id} {duration_ms:.1f}ms"
)

Handler = Callable[[object, Request], Awaitable[bytes | None]]


def async_render(handler: Handler) -> Callable[[object, Request], object]:
    @functools.wraps(handler)
    def render(resource: object, request: Request) -> object:
        started = time.monotonic()
        request.nanomdm_context = {"trace_id": new_trace_id(), "enrollment_id": "-"}
        gone = []

        def write(body: bytes | None) -> None:
            if gone:
                return
            if body:
                request.write(body)
            request.finish()

        def fail(failure: Failure) -> None:
            if gone or failure.check(CancelledError):
                return
            error = failure.value
            if isinstance(error, HTTPStatusError):
                request.nanomdm_context.setdefault("error", str(error))
                request.setResponseCode(error.status)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                write(str(error).encode("utf-8") + b"\n")
                return
            _log.failure(
                "unhandled error trace_id={trace_id}",
                failure,
                trace_id=request.nanomdm_context["trace_id"],
            )
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            write(b"internal server error\n")

        def log_outcome(_: object) -> None:
            context = request.nanomdm_context
            fields = dict(
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("utf-8", "replace"),
                status=request.code if not gone else "disconnected",
                outcome=context.get("error") or context.get("outcome", "-"),
                enrollment_id=context["enrollment_id"],
                trace_id=context["trace_id"],
                duration_ms=(time.monotonic() - started) * 1000,
            )
            _log.info("{request_line}", request_line=REQUEST_LINE.format(**fields), **fields)

        def client_gone(failure: Failure) -> None:
            gone.append(True)
            result.cancel()

        result = Deferred.fromCoroutine(handler(resource, request))
        request.notifyFinish().addCallbacks(lambda _: None, client_gone).addBoth(
            log_outcome
        )
        result.addCallbacks(write, fail)
        return NOT_DONE_YET

    return render
