"""
One request, several services: the core answers, the others only listen.

As NanoMDM's service/multi: the first service (the core) runs to the end
and its answer, or its error, is what the device gets.  Then every other
service (the webhook) is started with the same request; they are never
awaited, so they cannot delay the answer, and their errors are logged,
never returned.  They run whatever the core's outcome, as NanoMDM's do.
"""

from collections.abc import Callable, Coroutine
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from ..mdm.messages import CheckinMessage, Command, CommandReport
from ..mdm.request import MDMRequest
from ..storage.interfaces import ITokenUpdateTallyStore
from .dm import DeclarativeManagementForwarder
from .interfaces import IMDMService
from .webhook import WebhookService


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


class Integrations(Service):
    """
    What --webhook-url, --dm and --auth-proxy-url need, built from the settings.

    One outbound HTTP connection pool serves them all; its treq client keeps
    no cookies (a DDM server's cookie must not pass from one device to the
    next).  The GetToken registry comes from the server, where embedding
    code registers handlers before start-up.  Started and stopped with the
    server: stopping lets the webhook finish (briefly), then closes the pool.
    """

    def __init__(self, settings, storage: ITokenUpdateTallyStore, reactor, get_token):
        super().__init__()
        self.pool = HTTPConnectionPool(reactor)
        self.agent = Agent(reactor, pool=self.pool)
        self.http = HTTPClient(self.agent, cookiejar=CookieJar(DefaultCookiePolicy(allowed_domains=[])))
        self.get_token = get_token
        self.dm: DeclarativeManagementForwarder | None = None
        self.webhook: WebhookService | None = None
        if settings.dm:
            self.dm = DeclarativeManagementForwarder(
                settings.dm,
                self.http,
                settings.dm_send_hmac_key.encode("utf-8"),
                settings.dm_recv_hmac_key.encode("utf-8"),
                reactor,
            )
        if settings.webhook_url:
            self.webhook = WebhookService(
                settings.webhook_url,
                self.http,
                storage,
                settings.webhook_hmac_key.encode("utf-8"),
                reactor,
            )

    def with_listeners(self, core: IMDMService) -> IMDMService:
        """The core, followed by the webhook when there is one."""
        return MultiMDMService(core, self.webhook) if self.webhook else core

    def startService(self) -> None:
        super().startService()
        if self.webhook is not None:
            self.webhook.startService()

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.webhook is not None:
            await self.webhook.stopService()
        await self.pool.closeCachedConnections()
