"""
Cert auth: bind each enrollment to the certificate that enrolled it.

A certificate chaining to our CA proves a device is one of ours, not which
one.  Like NanoMDM's service/certauth, the Authenticate check-in associates
the SHA-256 of the certificate with the device-channel enrollment ID, and
every later request of that device (and of its user channels) must present
a certificate associated with it.  Refusals happen before the next service
runs, so nothing of a refused request is stored.
"""

from collections import OrderedDict

from zope.interface import implementer

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


@implementer(IMDMService)
class CertAuthService:
    """
    ``retro`` (NanoMDM's ``-retro``) lets an enrollment enrolled before cert
    auth was turned on gain an association on any request; it never
    replaces an association, nor takes a certificate associated elsewhere.
    """

    _log = make_logger("nanomdm_tw.services.certauth")

    def __init__(
        self,
        next_service: IMDMService,
        store: ICertAuthStore,
        retro: bool = False,
        cache_size: int = 50_000,
    ):
        self._next = next_service
        self._store = store
        self._retro = retro
        # Pairs seen associated.  Associations are never removed, so a pair
        # once confirmed stays valid: this saves a storage round trip on
        # every request of a device we have already seen.
        self._confirmed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, pair: tuple[str, str]) -> None:
        self._confirmed[pair] = None
        if len(self._confirmed) > self._cache_size:
            self._confirmed.popitem(last=False)

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
        self._remember((enrollment_id, cert_hash))
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
        if pair in self._confirmed:
            self._confirmed.move_to_end(pair)
            return
        if await self._store.is_cert_hash_associated(enrollment_id, cert_hash):
            self._remember(pair)
            return
        if not self._retro:
            raise self._refusal(request, cert_hash, NO_CERT_ASSOC)
        if await self._store.enrollment_has_cert_hash(enrollment_id):
            raise self._refusal(request, cert_hash, OTHER_CERT_ASSOC)
        if await self._store.has_cert_hash(cert_hash):
            raise self._refusal(request, cert_hash, NO_CERT_REUSE)
        await self._store.associate_cert_hash(enrollment_id, cert_hash)
        self._remember(pair)
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
