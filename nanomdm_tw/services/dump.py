"""
``--dump``: print every MDM request body and answer, for debugging enrollments.

A big body (a 20 MB report) is converted and written in an Offload thread,
not on the reactor.
"""

from typing import TextIO

from twisted.internet.defer import Deferred
from zope.interface import implementer

from ..mdm.messages import CheckinMessage, Command, CommandReport
from ..mdm.request import MDMRequest
from ..offload import Offload, run_if_big
from .interfaces import IMDMService


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@implementer(IMDMService)
class DumpService:
    def __init__(
        self, next_service: IMDMService, output: TextIO, offload: Offload | None = None
    ):
        self._next = next_service
        self._output = output
        self._offload = offload

    def _write(self, raw: bytes | None) -> None:
        if raw:
            self._output.write(_text(raw) + "\n")
            self._output.flush()

    def _dump(self, raw: bytes | None) -> Deferred:
        """A big body (a report, a profile in a command) is written from a thread."""
        return run_if_big(self._offload, len(raw or b""), self._write, raw)

    async def checkin(
        self, request: MDMRequest, message: CheckinMessage
    ) -> bytes | None:
        await self._dump(message.raw)
        answer = await self._next.checkin(request, message)
        await self._dump(answer)
        return answer

    async def command_report(
        self, request: MDMRequest, report: CommandReport
    ) -> Command | None:
        await self._dump(report.raw)
        command = await self._next.command_report(request, report)
        await self._dump(command.raw if command else None)
        return command
