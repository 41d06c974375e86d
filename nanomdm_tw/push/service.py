"""
The push service: from enrollment IDs to APNs results.

One storage call finds every enrollment's topic, token and push magic; the
IDs are pushed per topic, each topic through its own long-lived APNsClient.
A client is rebuilt when the topic's push cert was replaced, which the
per-topic stale token in storage reveals even when another server process
stored the renewal.
"""

from collections import defaultdict
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..cache import LRUCache
from ..metrics import server_metrics
from ..storage.interfaces import PushInfo
from .apns import PRODUCTION_URL, APNsClient, PushResult

NO_PUSH_INFO = "no push info"
NO_PUSH_CERT = "no push certificate for topic"
UNUSABLE_PUSH_CERT = "push certificate for topic unusable"

# The reasons Apple documents for a rejected push; the metrics count another as "other".
APNS_REASONS = frozenset(
    {
        "BadCollapseId", "BadDeviceToken", "BadExpirationDate", "BadMessageId",
        "BadPriority", "BadTopic", "DeviceTokenNotForTopic", "DuplicateHeaders",
        "IdleTimeout", "InvalidPushType", "MissingDeviceToken", "MissingTopic",
        "PayloadEmpty", "TopicDisallowed", "BadCertificate", "BadCertificateEnvironment",
        "ExpiredProviderToken", "Forbidden", "InvalidProviderToken", "MissingProviderToken",
        "UnrelatedKeyIdInToken", "BadEnvironmentKeyIdInToken", "BadPath",
        "MethodNotAllowed", "ExpiredToken", "Unregistered", "PayloadTooLarge",
        "TooManyProviderTokenUpdates", "TooManyRequests", "InternalServerError",
        "ServiceUnavailable", "Shutdown",
    }
)  # fmt: skip
_OUR_REASONS = {NO_PUSH_INFO: "no_push_info", NO_PUSH_CERT: "no_push_cert"}


def result_label(result: PushResult) -> str:
    """A push result as one of a bounded set of metric labels (Apple's reasons, ours)."""
    if result.status == 200:
        return "success"
    reason = result.reason
    if result.status is not None:
        return reason if reason in APNS_REASONS else "other"
    if reason in _OUR_REASONS:
        return _OUR_REASONS[reason]
    if reason and reason.startswith(UNUSABLE_PUSH_CERT):
        return "unusable_push_cert"
    return "no_answer"  # no connection, or no answer in time


# Seconds a cached APNs client is trusted before storage is asked whether its
# push certificate was renewed or deleted (by this server or another sharing
# the database).
STALE_CHECK_INTERVAL = 2.0
# Topics with a client (and its connection) kept open, least recently pushed
# to closed first.
MAX_CLIENTS = 1000

class UnusablePushCert(ValueError):
    """The stored push cert or key cannot be loaded for TLS."""


@dataclass(slots=True)
class _Provider:
    """A topic's client, its cert's stale token, and when that was last checked."""

    client: APNsClient
    stale_token: str
    checked_at: float


class PushService(Service):
    """
    Pushes to enrollments; ``store`` provides IPushInfoStore and IPushCertStore.

    A Service so the server's MultiService closes the APNs connections on
    shut-down; connections open lazily, so there is nothing to start.

    ``stale_check_interval``: a cached client is trusted this many seconds
    after its stale token was last confirmed, so a burst of pushes costs one
    storage round trip per topic, and a renewal is picked up within that
    time.  At most ``max_clients`` topics keep a client.  The other options
    are passed to each APNsClient.
    """

    _log = Logger()

    def __init__(
        self,
        store,
        reactor,
        base_url: str = PRODUCTION_URL,
        extra_ca_pem: bytes | None = None,
        timeout: float = 10.0,
        expiration: float | None = None,
        stale_check_interval: float = STALE_CHECK_INTERVAL,
        clock: IReactorTime | None = None,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._store = store
        self._reactor = reactor
        self._clock = clock or reactor
        self._client_options = dict(
            base_url=base_url,
            extra_ca_pem=extra_ca_pem,
            timeout=timeout,
            expiration=expiration,
            clock=clock,
        )
        self._stale_check_interval = stale_check_interval
        # Stale checks, not an expiry, keep these current: a client and its
        # connection outlive many checks.
        self._providers: LRUCache[str, _Provider] = LRUCache(
            max_clients, on_evict=self._evicted
        )
        # Only the topics being pushed to: a device reports any topic it likes.
        self._locks: defaultdict[str, DeferredLock] = defaultdict(DeferredLock)
        self._retiring: set[Deferred[None]] = set()

    async def push(self, enrollment_ids: list[str]) -> dict[str, PushResult]:
        """Push to each ID; every ID gets a result, failures included."""
        infos = await self._store.retrieve_push_info(list(enrollment_ids))
        results = {
            enrollment_id: PushResult(reason=NO_PUSH_INFO)
            for enrollment_id in enrollment_ids
            if enrollment_id not in infos
        }
        by_topic: defaultdict[str, list[PushInfo]] = defaultdict(list)
        for info in infos.values():
            by_topic[info.topic].append(info)
        for topic_results in await gatherResults(
            [
                Deferred.fromCoroutine(self._push_topic(topic, group))
                for topic, group in by_topic.items()
            ]
        ):
            results.update(topic_results)
        server_metrics().pushed(map(result_label, results.values()))
        return results

    async def store_push_cert(self, topic: str, cert_pem: bytes, key_pem: bytes) -> str:
        """
        Store a topic's new push cert; this process's very next push uses it.

        Other processes sharing the storage see the new stale token within
        ``stale_check_interval``.
        """
        stale_token = await self._store.store_push_cert(topic, cert_pem, key_pem)
        provider = self._providers.pop(topic)
        if provider is not None:
            self._retire(provider.client)
            self._log.info("push cert of topic {topic} replaced", topic=topic)
        return stale_token

    def retrieve_push_cert(self, topic: str) -> Deferred:
        return self._store.retrieve_push_cert(topic)

    def retrieve_push_certs(self) -> Deferred:
        return self._store.retrieve_push_certs()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self.close())

    async def close(self) -> None:
        """Close every client, after the pushes they carry are answered."""
        for provider in self._providers.values():
            self._retire(provider.client)
        self._providers.clear()
        await gatherResults(list(self._retiring))

    async def _push_topic(
        self, topic: str, infos: list[PushInfo]
    ) -> dict[str, PushResult]:
        # The pushes are handed to the client while the topic's lock is held,
        # so a client being replaced concurrently is closed only after them.
        lock = self._locks[topic]
        try:
            async with lock:
                try:
                    client = await self._client_for(topic)
                except UnusablePushCert as e:
                    client, reason = None, str(e)
                else:
                    reason = NO_PUSH_CERT
                if client is None:
                    return {info.enrollment_id: PushResult(reason=reason) for info in infos}
                pending = client.push_many(
                    [(info.token, info.push_magic) for info in infos], topic
                )
        finally:
            if not lock.locked and not lock.waiting:
                self._locks.pop(topic, None)
        results = await pending
        return {info.enrollment_id: r for info, r in zip(infos, results)}

    async def _client_for(self, topic: str) -> APNsClient | None:
        """The topic's client, rebuilt when storage says its cert is stale."""
        provider = self._providers.get(topic)
        now = self._clock.seconds()
        if provider is not None:
            if now - provider.checked_at < self._stale_check_interval:
                return provider.client
            stale = await self._store.is_push_cert_stale(topic, provider.stale_token)
            # Unless store_push_cert or an eviction closed it meanwhile:
            if self._providers.get(topic) is provider:
                if not stale:
                    provider.checked_at = now
                    return provider.client
                self._providers.pop(topic)
                self._retire(provider.client)
                self._log.info("push cert of topic {topic} replaced", topic=topic)
        cert = await self._store.retrieve_push_cert(topic)
        if cert is None:
            return None
        try:
            client = APNsClient(
                self._reactor, cert.cert_pem, cert.key_pem, **self._client_options
            )
        except Exception as e:
            self._log.failure("push cert of topic {topic} unusable", topic=topic)
            raise UnusablePushCert(f"{UNUSABLE_PUSH_CERT}: {e}") from e
        self._providers.put(topic, _Provider(client, cert.stale_token, now))
        return client

    def _evicted(self, provider: _Provider) -> None:
        self._retire(provider.client)

    def _retire(self, client: APNsClient) -> None:
        closing = Deferred.fromCoroutine(client.close())
        self._retiring.add(closing)
        closing.addErrback(
            lambda failure: self._log.failure("closing APNs client", failure)
        )
        closing.addBoth(lambda _: self._retiring.discard(closing))
