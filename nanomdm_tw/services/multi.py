"""
One request, several services: the core answers, the others only listen.

As NanoMDM's service/multi: the first service (the core) runs to the end
and its answer, or its error, is what the device gets.  Then every other
service (the webhook) is started with the same request; they are never
awaited, so they cannot delay the answer, and their errors are logged,
never returned.  They run whatever the core's outcome, as NanoMDM's do.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..mdm.messages import CheckinMessage, Command, CommandReport
from ..mdm.request import MDMRequest
from .interfaces import IMDMService


@implementer(IMDMService)
class MultiMDMService:
    _log = Logger()

    def __init__(self, core: IMDMService, *others: IMDMService):
        self._core = core
        self._others = others

    async def checkin(
        self, request: MDMRequest, message: CheckinMessage
    ) -> bytes | None:
        try:
            return await self._core.checkin(request, message)
        finally:
            self._run_others(request, lambda other: other.checkin(request, message))

    async def command_report(
        self, request: MDMRequest, report: CommandReport
    ) -> Command | None:
        try:
            return await self._core.command_report(request, report)
        finally:
            self._run_others(request, lambda other: other.command_report(request, report))

    def _run_others(
        self,
        request: MDMRequest,
        call: Callable[[IMDMService], Coroutine[Any, Any, Any]],
    ) -> None:
        for other in self._others:
            Deferred.fromCoroutine(call(other)).addErrback(
                self._other_failed, other, request
            )

    def _other_failed(
        self, failure: Failure, other: IMDMService, request: MDMRequest
    ) -> None:
        self._log.failure(
            "{service} failed trace_id={trace_id} enrollment_id={enrollment_id}",
            failure,
            service=type(other).__name__,
            trace_id=request.trace_id,
            enrollment_id=request.enroll_id.id,
        )
