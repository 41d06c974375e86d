"""
Cert auth: bind each enrollment to the certificate that enrolled it.

A certificate chaining to our CA proves a device is one of ours, not which
one.  Like NanoMDM's service/certauth, the Authenticate check-in associates
the SHA-256 of the certificate with the device-channel enrollment ID, and
every later request of that device (and of its user channels) must present
a certificate associated with it.  Refusals happen before the next service
runs, so nothing of a refused request is stored.
"""

from zope.interface import implementer

from ..cache import LRUCache
from ..crypto import identity
from ..errors import AuthenticationError, MessageError
from ..logs import make_logger
from ..mdm.messages import Authenticate, CheckinMessage, Command, CommandReport
from ..mdm.request import MDMRequest
from ..storage.interfaces import ICertAuthStore
from .interfaces import IMDMService

# Refusal reasons, worded as NanoMDM's errors are.
NO_CERT_REUSE = "cert re-use not permitted"
NO_CERT_ASSOC = "enrollment not associated with cert"
OTHER_CERT_ASSOC = "enrollment has another cert associated"

# Associations confirmed by storage are remembered this long, for this many
# (enrollment, certificate) pairs: an association deleted in the database
# (by any process) stops being honoured here within CACHE_TTL seconds.
CACHE_SIZE = 50_000
CACHE_TTL = 60.0


@implementer(IMDMService)
class CertAuthService:
    """
    ``retro`` (NanoMDM's ``-retro``) lets an enrollment enrolled before cert
    auth was turned on gain an association on any request; it never
    replaces an association, nor takes a certificate associated elsewhere.

    ``clock`` (an ``IReactorTime``) times the cache of confirmed pairs.
    """

    _log = make_logger("nanomdm_tw.services.certauth")

    def __init__(
        self,
        next_service: IMDMService,
        store: ICertAuthStore,
        retro: bool = False,
        cache_size: int = CACHE_SIZE,
        cache_ttl: float = CACHE_TTL,
        clock=None,
    ):
        self._next = next_service
        self._store = store
        self._retro = retro
        # Pairs seen associated: saves a storage round trip on nearly every
        # request of a device we have already seen.
        self._confirmed: LRUCache[tuple[str, str], bool] = LRUCache(
            cache_size, cache_ttl, clock
        )

    async def checkin(
        self, request: MDMRequest, message: CheckinMessage
    ) -> bytes | None:
        if isinstance(message, Authenticate):
            await self._associate_new(request)
        else:
            await self._validate_existing(request)
        return await self._next.checkin(request, message)

    async def command_report(
        self, request: MDMRequest, report: CommandReport
    ) -> Command | None:
        await self._validate_existing(request)
        return await self._next.command_report(request, report)

    def _cert_hash(self, request: MDMRequest) -> str:
        if request.certificate is None:
            raise MessageError("missing MDM certificate")
        return identity.cert_hash(request.certificate)

    async def _associate_new(self, request: MDMRequest) -> None:
        """Authenticate: a new enrollment takes a certificate no one else has."""
        enrollment_id = request.enroll_id.device_channel_id
        cert_hash = self._cert_hash(request)
        if await self._store.has_cert_hash(cert_hash):
            # A device re-sending Authenticate with its own certificate is fine.
            if not await self._store.is_cert_hash_associated(enrollment_id, cert_hash):
                raise self._refusal(request, cert_hash, NO_CERT_REUSE)
        await self._store.associate_cert_hash(enrollment_id, cert_hash)
        self._confirmed.put((enrollment_id, cert_hash), True)
        self._log.debug(
            "cert auth: associated cert_hash={cert_hash} enrollment_id={enrollment_id}"
            " trace_id={trace_id}",
            cert_hash=cert_hash,
            enrollment_id=enrollment_id,
            trace_id=request.trace_id,
        )

    async def _validate_existing(self, request: MDMRequest) -> None:
        """Any other request: the pair must exist, or (retro) may be created."""
        enrollment_id = request.enroll_id.device_channel_id
        cert_hash = self._cert_hash(request)
        pair = (enrollment_id, cert_hash)
        if self._confirmed.get(pair):
            return
        if await self._store.is_cert_hash_associated(enrollment_id, cert_hash):
            self._confirmed.put(pair, True)
            return
        if not self._retro:
            raise self._refusal(request, cert_hash, NO_CERT_ASSOC)
        if await self._store.enrollment_has_cert_hash(enrollment_id):
            raise self._refusal(request, cert_hash, OTHER_CERT_ASSOC)
        if await self._store.has_cert_hash(cert_hash):
            raise self._refusal(request, cert_hash, NO_CERT_REUSE)
        await self._store.associate_cert_hash(enrollment_id, cert_hash)
        self._confirmed.put(pair, True)
        self._log.info(
            "cert auth: retroactively associated cert_hash={cert_hash}"
            " enrollment_id={enrollment_id} trace_id={trace_id}",
            cert_hash=cert_hash,
            enrollment_id=enrollment_id,
            trace_id=request.trace_id,
        )

    def _refusal(
        self, request: MDMRequest, cert_hash: str, reason: str
    ) -> AuthenticationError:
        """Log a refusal; the error to raise for it."""
        self._log.warn(
            "cert auth refused: {reason} enrollment_id={enrollment_id}"
            " cert_hash={cert_hash} trace_id={trace_id}",
            reason=reason,
            enrollment_id=request.enroll_id.device_channel_id,
            cert_hash=cert_hash,
            trace_id=request.trace_id,
        )
        return AuthenticationError("cert auth: " + reason)
