"""
The running server: storage, the service chain and the HTTP site, started
and stopped as one Twisted service.

``Settings`` (settings.py) is what the command line (tap.py) or a .tac file
decides; ``NanoMDMService`` does all I/O in ``startService``, none at
construction.
"""

import os
import secrets
import sys
from dataclasses import replace

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from .crypto.devca import DevelopmentCA
from .crypto.identity import DeviceIdentity
from .crypto.trust import TrustStore
from .logs import set_debug
from .malloc import pin_mmap_threshold
from .metrics.processes import share_between_processes, stop_sharing
from .metrics.queuedepth import QueueDepthSampler, queue_depth_sampler
from .offload import Offload
from .push.service import PushService
from .resources.authproxy import AuthProxyResource
from .resources.admin import AdminResource
from .resources.api import APIGuard, Pusher, build_api
from .resources.escrow import EscrowKeyUnlockResource
from .resources.health import Readiness, observability
from .resources.channel import MDMChannel
from .resources.enrollment_profile import EnrollmentProfileResource
from .resources.mdm import Accepts, MDMEndpoint
from .resources.overview import OverviewResource
from .resources.methods import Directory, MDMServerRequest
from .resources.render import log_plain_answer
from .resources.version import VersionResource
from .services.certauth import CertAuthService
from .services.core import CoreService
from .services.dump import DumpService
from .services.gettoken import GetTokenRegistry
from .services.interfaces import IMDMService
from .services.integrations import Integrations
from .storage import make_storage, parse_storage_options
from .storage.interfaces import IPushCertStore, IStorage, StorageUnreachable
from .settings import Settings
from .storage.multi import MultiStorage
from .storage.retention import HistoryPruner
from .workers import WorkerPool, adopt_listening_socket, worker_stop_timeout


# Seconds between attempts to reach the database at start-up (doubling up to the max).
STORAGE_RETRY_FIRST = 1.0
STORAGE_RETRY_MAX = 30.0


class MDMSite(Site):
    """
    A Site with our body limit, its open connections known so that shut-down
    can let their requests finish; per-request logging is ours, not Site's.
    """

    requestFactory = MDMServerRequest
    protocol = MDMChannel
    noisy = False

    def __init__(self, root: Resource, max_body_size: int):
        super().__init__(root)
        self.max_body_size = max_body_size
        self.connections: set[MDMChannel] = set()
        self._all_closed: Deferred | None = None

    def log(self, request: object) -> None:
        """A request async_render did not answer is logged here, when it finished."""
        log_plain_answer(request)

    def connection_closed(self, channel: MDMChannel) -> None:
        self.connections.discard(channel)
        if not self.connections and self._all_closed is not None:
            if not self._all_closed.called:
                self._all_closed.callback(None)

    async def drain(self, clock, grace: float) -> int:
        """
        Let the requests under way finish within ``grace`` seconds (the port
        has stopped listening), then cut the connections still open; how
        many were cut.
        """
        for channel in list(self.connections):
            channel.drain()
        if self.connections:
            self._all_closed = Deferred()
            timer = clock.callLater(grace, self._all_closed.callback, None)
            await self._all_closed
            if timer.active():
                timer.cancel()
        late = list(self.connections)
        for channel in late:
            channel.transport.abortConnection()
        return len(late)


def build_service_chain(
    settings: Settings,
    storage: IStorage,
    cert_auth: bool = True,
    integrations: Integrations | None = None,
    offload: Offload | None = None,
) -> IMDMService:
    """
    Core service last (with the webhook beside it), cert auth before it,
    dump outermost (as NanoMDM chains them).
    """
    chain: IMDMService = CoreService(
        storage,
        ua_zero_length_challenge=settings.ua_zl_dc,
        declarative_management=integrations.dm if integrations else None,
        get_token=integrations.get_token if integrations else None,
    )
    if integrations is not None:
        chain = integrations.with_listeners(chain)
    if cert_auth:
        chain = CertAuthService(chain, storage, retro=settings.retro)
    if settings.dump:
        chain = DumpService(chain, sys.stdout, offload)
    return chain


def build_root(
    settings: Settings,
    storage: IStorage,
    identity: DeviceIdentity | None,
    api_key: str,
    pusher: Pusher | None = None,
    reactor=None,
    integrations: Integrations | None = None,
    push_certs: IPushCertStore | None = None,
    offload: Offload | None = None,
    readiness: Readiness | None = None,
) -> Resource:
    """
    ``offload``: where big bodies are decoded (None: on the reactor, as tests
    may); ``readiness``: the check ``/readyz`` makes, shared by the overview.
    """
    root = Directory()
    root.putChild(b"version", VersionResource())
    if not settings.disable_mdm:
        chain = build_service_chain(
            settings, storage, integrations=integrations, offload=offload
        )
        if settings.auth_proxy_url and integrations is not None:
            root.putChild(
                b"authproxy",
                AuthProxyResource(
                    settings.auth_proxy_url,
                    identity,
                    storage,
                    integrations.agent,
                    settings.http_timeout,
                    integrations.clock,
                ),
            )
        if settings.checkin:
            root.putChild(b"mdm", MDMEndpoint(chain, identity, Accepts.REPORTS, offload))
            root.putChild(b"checkin", MDMEndpoint(chain, identity, Accepts.CHECKINS, offload))
        else:
            root.putChild(b"mdm", MDMEndpoint(chain, identity, Accepts.BOTH, offload))
    if api_key:
        escrow = EscrowKeyUnlockResource(
            storage,
            reactor,
            settings.escrow_key_unlock_url,
            settings.apns_ca_pem(),
            settings.http_timeout,
        )
        overview = OverviewResource(
            storage,
            readiness or Readiness(lambda: storage, reactor),
            settings.storage.name,
            webhook_configured=bool(settings.webhook_url),
        )
        root.putChild(
            b"v1",
            build_api(
                api_key, storage, pusher, escrow, push_certs, offload,
                {
                    b"overview": overview,
                    b"enrollment-profile": EnrollmentProfileResource(settings.checkin),
                },
            ),  # fmt: skip
        )
        if settings.migration:
            # Check-ins from another server's export: API-authenticated, no device identity.
            migration_chain = build_service_chain(
                settings, storage, cert_auth=False, offload=offload
            )
            migration = MDMEndpoint(migration_chain, None, Accepts.CHECKINS, offload)
            root.putChild(b"migration", APIGuard(api_key, migration))
        if settings.admin:
            root.putChild(b"admin", AdminResource())
    return root


class NanoMDMService(Service):
    _log = Logger()

    def __init__(self, settings: Settings, reactor=None, inherited_fd: int | None = None):
        """``inherited_fd``: serve on this listening socket (a --workers worker)."""
        settings.check()  # fail closed, however the settings were built (.tac, Python)
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self._reactor = reactor
        self._inherited_fd = inherited_fd
        self.workers: WorkerPool | None = None
        self.storage: IStorage | None = None
        self.push_service: PushService | None = None
        self.port: IListeningPort | None = None
        self.site: MDMSite | None = None
        self.metrics_port: IListeningPort | None = None  # with --metrics-listen
        self.queue_depth: QueueDepthSampler | None = None
        self._metrics_folder: str | None = None  # shared by --workers processes
        self.api_key = settings.api_key
        self.development_ca: DevelopmentCA | None = None
        self.ready: Deferred | None = None
        # Embedding code registers GetToken handlers here before start-up.
        self.get_token_registry = GetTokenRegistry()
        self.integrations: Integrations | None = None
        self.pruners: list[HistoryPruner] = []
        self.offload = Offload(reactor)
        self.readiness = Readiness(lambda: self.storage, reactor)

    def startService(self) -> None:
        super().startService()
        set_debug(self.settings.debug)
        if pin_mmap_threshold():
            self._log.info("glibc malloc: big bodies mapped apart, their memory freed with them")
        self.ready = Deferred.fromCoroutine(self._start())
        self.ready.addErrback(self._start_failed)

    def _start_failed(self, failure) -> None:
        if failure.check(CancelledError):
            return None  # stopped while still starting
        self._log.critical(
            "nanomdm-tw could not start: {error}", error=failure.getErrorMessage()
        )
        # A non-zero exit, so that systemd (Restart=on-failure) and scripts see it;
        # a failure before the reactor runs (a bad DSN) waits for it to run.
        self._reactor.callWhenRunning(self._exit_failed)
        return None

    def _exit_failed(self) -> None:
        self._reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self._reactor.stop()

    async def _open_storage(self, storage: IStorage) -> None:
        """Open storage; while its server is unreachable, keep trying instead of exiting."""
        delay = STORAGE_RETRY_FIRST
        while True:
            try:
                return await storage.open()
            except StorageUnreachable as e:
                self._log.warn(
                    "{error}; trying again in {delay:g}s", error=str(e), delay=delay
                )
            await deferLater(self._reactor, delay)
            delay = min(delay * 2, STORAGE_RETRY_MAX)

    @property
    def _first_process(self) -> bool:
        """Not a --workers worker: the process that owns listeners and periodic work."""
        return self._inherited_fd is None

    async def _start(self) -> None:
        settings = self.settings
        if self._first_process and settings.workers > 1:
            self._metrics_folder = share_between_processes()
            self._log.info(
                "metrics of the {count} processes summed in {folder}",
                count=settings.workers,
                folder=self._metrics_folder,
            )
        observing = observability(self.readiness)
        if settings.metrics_listen and self._first_process:
            # Before storage opens: /healthz answers, /readyz says why not yet.
            self.metrics_port = await self._listen_for_metrics(observing)
        specs = (settings.storage, *settings.extra_storages)
        stores = [
            make_storage(
                spec.name,
                spec.dsn,
                spec.options,
                timeout=settings.storage_timeout,
                max_waiting=settings.storage_max_waiting,
            )
            for spec in specs
        ]
        storage = stores[0] if len(stores) == 1 else MultiStorage(
            stores, self._reactor, shutdown_grace=settings.shutdown_grace
        )
        await self._open_storage(storage)
        self.storage = storage
        if self._first_process:
            self.queue_depth = queue_depth_sampler(storage)
            if self.queue_depth is not None:
                self.queue_depth.startService()
        trust = self._trust_store()
        identity = DeviceIdentity(trust, settings.cert_header or None)
        self.push_service = PushService(
            storage,
            self._reactor,
            base_url=settings.apns_url,
            extra_ca_pem=settings.apns_ca_pem(),
            expiration=settings.push_expiration,
            timeout=settings.apns_timeout,
        )
        self.offload.start()
        self.integrations = Integrations(
            settings, storage, self._reactor, self.get_token_registry, self.offload
        )
        self.integrations.startService()
        root = build_root(
            settings,
            storage,
            identity,
            self.api_key,
            self.push_service.push,
            self._reactor,
            self.integrations,
            push_certs=self.push_service,
            offload=self.offload,
            readiness=self.readiness,
        )
        if not settings.metrics_listen:
            for name, resource in observing.items():
                root.putChild(name, resource)
        site = self.site = MDMSite(root, settings.max_body_size)
        if self._inherited_fd is not None:
            self.port = adopt_listening_socket(self._reactor, site, self._inherited_fd)
        else:
            endpoint = serverFromString(self._reactor, settings.listen)
            self.port = await endpoint.listen(site)
        self._start_pruners(specs, stores)
        if settings.workers > 1:
            self.workers = WorkerPool(
                self._worker_settings(), self.port, settings.workers, self._reactor
            )
            self.workers.startService()
        address = self.port.getHost()
        self._log.info(
            "nanomdm-tw listening on {host}:{port} (storage {storage})",
            host=address.host,
            port=address.port,
            storage=settings.storage.name,
        )

    def _start_pruners(self, specs, stores) -> None:
        """Each backend with a ``retention=`` option prunes its own history (not in workers)."""
        if not self._first_process:
            return
        for spec, store in zip(specs, stores):
            retention = parse_storage_options(spec.options).get("retention")
            if retention:
                pruner = HistoryPruner(store, retention, self._reactor)
                pruner.startService()
                self.pruners.append(pruner)

    async def _listen_for_metrics(self, resources: dict) -> IListeningPort:
        root = Directory()
        for name, resource in resources.items():
            root.putChild(name, resource)
        endpoint = serverFromString(self._reactor, self.settings.metrics_listen)
        port = await endpoint.listen(MDMSite(root, self.settings.max_body_size))
        address = port.getHost()
        self._log.info(
            "metrics and health on {host}:{port}", host=address.host, port=address.port
        )
        return port

    def _worker_settings(self) -> Settings:
        """What a worker needs to serve exactly as we do (no --dev set-up of its own)."""
        settings = replace(self.settings, api_key=self.api_key, dev=False)
        if self.development_ca is not None and not settings.ca:
            settings = replace(settings, ca=str(self.settings.data_dir / "devca" / "ca.pem"))
        return settings

    def _trust_store(self) -> TrustStore | None:
        settings = self.settings
        if settings.ca:
            return TrustStore.from_files(settings.ca, settings.intermediate or None)
        if settings.dev:
            self._prepare_development()
            return TrustStore(self.development_ca.cert_pem)
        return None

    def _prepare_development(self) -> None:
        """--dev without --ca: a CA and an API key kept in the data folder."""
        folder = self.settings.data_dir
        ca_folder = folder / "devca"
        if (ca_folder / "ca.pem").exists():
            self.development_ca = DevelopmentCA.load(ca_folder)
        else:
            self.development_ca = DevelopmentCA.create()
            self.development_ca.save(ca_folder)
        if not self.api_key:
            key_file = folder / "api-key"
            if not key_file.exists():
                folder.mkdir(parents=True, exist_ok=True)
                key_file.touch(mode=0o600)
                key_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.api_key = key_file.read_text().strip()
            self._log.warn("API key (user nanomdm) is in {path}", path=str(key_file))
        self._log.warn(
            "DEVELOPMENT ONLY: devices are trusted when issued by the development CA"
            " in {path}; never use --dev in production",
            path=str(ca_folder),
        )

    async def _stop(self) -> None:
        """
        Shut-down (SIGTERM): workers told to stop as well; no new connections;
        requests under way get ``shutdown_grace`` seconds to finish; then the
        webhook delivers what it can, and storage drains mirror writes, writes
        the batched last-seen times and closes its pools, each within the
        grace again; the APNs connections close once their pushes are answered.
        """
        grace = self.settings.shutdown_grace
        if self.workers is not None:
            self.workers.terminate()
        if self.port is not None:
            # None when already closed: a worker's port closes with the first
            # process's, which shuts the shared socket down for every process.
            await maybeDeferred(self.port.stopListening)
        for pruner in self.pruners:
            await pruner.stopService()
        if self.queue_depth is not None:
            await self.queue_depth.stopService()
        if self.site is not None:
            self._log.info(
                "stopping: {count} connections get up to {grace:g}s to finish their requests",
                count=len(self.site.connections),
                grace=grace,
            )
            cut = await self.site.drain(self._reactor, grace)
            if cut:
                self._log.warn("{count} requests cut after {grace:g}s", count=cut, grace=grace)
        if self.metrics_port is not None:
            await self.metrics_port.stopListening()
        if self.workers is not None:
            await self.workers.wait(worker_stop_timeout(grace))
        closing = []
        if self.integrations is not None:
            closing.append(self.integrations.stopService())
        if self.push_service is not None:
            closing.append(Deferred.fromCoroutine(self.push_service.close()))
        if self.storage is not None:
            closing.append(Deferred.fromCoroutine(self.storage.close()))
        for success, failure in await DeferredList(closing, consumeErrors=True):
            if not success:
                self._log.failure("while stopping", failure)
        self.offload.stop()  # after the webhook: its last events may be encoding there
        self._log.info("nanomdm-tw stopped")
        if self._metrics_folder is not None:  # last: counting may go on until here
            stop_sharing(self._metrics_folder)

    def stopService(self) -> Deferred:
        super().stopService()
        if self.ready is not None and not self.ready.called:
            self.ready.cancel()  # still waiting for the database: give up
        return Deferred.fromCoroutine(self._stop())
