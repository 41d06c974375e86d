"""
The outbound integrations (webhook, Declarative Management, auth proxy),
built from the settings and started and stopped with the server.
"""

from http.cookiejar import CookieJar, DefaultCookiePolicy

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from ..offload import Offload
from ..storage.interfaces import ITokenUpdateTallyStore
from .dm import DeclarativeManagementForwarder
from .interfaces import IMDMService
from .multi import MultiMDMService
from .webhook import WebhookService


class Integrations(Service):
    """
    What --webhook-url, --dm and --auth-proxy-url need, built from the settings.

    One outbound HTTP connection pool serves them all; its treq client keeps
    no cookies (a DDM server's cookie must not pass from one device to the
    next).  The GetToken registry comes from the server, where embedding
    code registers handlers before start-up.  Started and stopped with the
    server: stopping lets the webhook finish (briefly), then closes the pool.
    """

    def __init__(
        self,
        settings,
        storage: ITokenUpdateTallyStore,
        reactor,
        get_token,
        offload: Offload | None = None,
    ):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.clock = reactor
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
                timeout=settings.http_timeout,
                offload=offload,
            )
        if settings.webhook_url:
            self.webhook = WebhookService(
                settings.webhook_url,
                self.http,
                storage,
                settings.webhook_hmac_key.encode("utf-8"),
                reactor,
                timeout=settings.webhook_timeout,
                max_queued_bytes=settings.webhook_queue_bytes,
                offload=offload,
                shutdown_grace=settings.shutdown_grace,
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
