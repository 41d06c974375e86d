"""``--dump``: print every MDM request body and answer, for debugging enrollments."""

from typing import TextIO

from zope.interface import implementer

from ..mdm.messages import CheckinMessage, Command, CommandReport
from ..mdm.request import MDMRequest
from .interfaces import IMDMService


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@implementer(IMDMService)
class DumpService:
    def __init__(self, next_service: IMDMService, output: TextIO):
        self._next = next_service
        self._output = output

    def _write(self, raw: bytes | None) -> None:
        if raw:
            self._output.write(_text(raw) + "\n")
            self._output.flush()

    async def checkin(
        self, request: MDMRequest, message: CheckinMessage
    ) -> bytes | None:
        self._write(message.raw)
        answer = await self._next.checkin(request, message)
        self._write(answer)
        return answer

    async def command_report(
        self, request: MDMRequest, report: CommandReport
    ) -> Command | None:
        self._write(report.raw)
        command = await self._next.command_report(request, report)
        self._write(command.raw if command else None)
        return command
