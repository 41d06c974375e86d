"""
The one interface every link of the service chain provides.

A link (cert auth, dump, webhook, the core service) handles a request and
usually hands it on to the next link.  Methods are ``async def``; raise an
``HTTPStatusError`` to answer the device with a specific status.
"""

from zope.interface import Interface

from ..mdm.messages import CheckinMessage, Command, CommandReport
from ..mdm.request import MDMRequest


class IMDMService(Interface):
    async def checkin(request: MDMRequest, message: CheckinMessage) -> bytes | None:
        """
        Handle a check-in message.

        Returns the body of the answer (for GetBootstrapToken,
        UserAuthenticate, DeclarativeManagement, GetToken) or None for
        an empty 200.
        """

    async def command_report(
        request: MDMRequest, report: CommandReport
    ) -> Command | None:
        """Store a command report and return the next queued command, if any."""
