"""
The core MDM service: what each check-in and command report means for storage.

It is the last link of the service chain and the one whose answer the
device gets.  Semantics follow NanoMDM's service/nanomdm.
"""

import plistlib

from twisted.logger import Logger
from zope.interface import implementer

from ..errors import HTTPStatusError
from ..mdm import messages as m
from ..mdm.request import MDMRequest
from ..storage.interfaces import IStorage
from .dm import IDeclarativeManagement
from .gettoken import GetTokenRegistry
from .interfaces import IMDMService

# A zero-length DigestChallenge: accepts the user channel without a password.
EMPTY_DIGEST_CHALLENGE = plistlib.dumps({"DigestChallenge": ""})


@implementer(IMDMService)
class CoreService:
    _log = Logger()

    def __init__(
        self,
        store: IStorage,
        ua_zero_length_challenge: bool = False,
        declarative_management: IDeclarativeManagement | None = None,
        get_token: GetTokenRegistry | None = None,
    ):
        self._store = store
        self._ua_zero_length_challenge = ua_zero_length_challenge
        self._dm = declarative_management
        self._get_token_registry = get_token
        self._handlers = {
            m.Authenticate: self._authenticate,
            m.TokenUpdate: self._store.store_token_update,
            m.CheckOut: self._check_out,
            m.UserAuthenticate: self._user_authenticate,
            m.SetBootstrapToken: self._store.store_bootstrap_token,
            m.GetBootstrapToken: self._get_bootstrap_token,
            m.DeclarativeManagement: self._declarative_management,
            m.GetToken: self._get_token,
        }

    async def checkin(
        self, request: MDMRequest, message: m.CheckinMessage
    ) -> bytes | None:
        self._store.touch(request.enroll_id.id)
        return await self._handlers[type(message)](request, message)

    async def _authenticate(self, request: MDMRequest, message: m.Authenticate) -> None:
        await self._store.store_authenticate(request, message)
        # A re-enrolling device must not run commands queued for its old enrollment,
        # and it is not live again until its TokenUpdate.
        await self._store.clear_queue(request)
        await self._store.disable(request)

    async def _check_out(self, request: MDMRequest, message: m.CheckOut) -> None:
        await self._store.disable(request)

    async def _user_authenticate(
        self, request: MDMRequest, message: m.UserAuthenticate
    ) -> bytes | None:
        if self._ua_zero_length_challenge:
            await self._store.store_user_authenticate(request, message)
        if message.digest_response:
            # The second message, answering our challenge: accept it.
            return None
        if not self._ua_zero_length_challenge:
            raise HTTPStatusError("declining management of user channel", 410)
        return EMPTY_DIGEST_CHALLENGE

    async def _get_bootstrap_token(
        self, request: MDMRequest, message: m.GetBootstrapToken
    ) -> bytes | None:
        token = await self._store.retrieve_bootstrap_token(request, message)
        if token is None:
            return None
        return plistlib.dumps({"BootstrapToken": token})

    async def _declarative_management(
        self, request: MDMRequest, message: m.DeclarativeManagement
    ) -> bytes | None:
        if self._dm is None:
            raise HTTPStatusError("no Declarative Management handler configured", 500)
        return await self._dm.declarative_management(request, message)

    async def _get_token(self, request: MDMRequest, message: m.GetToken) -> bytes | None:
        if self._get_token_registry is None:
            raise HTTPStatusError(
                "no GetToken handler for TokenServiceType " + message.token_service_type, 500
            )
        return await self._get_token_registry.answer(request, message)

    async def command_report(
        self, request: MDMRequest, report: m.CommandReport
    ) -> m.Command | None:
        self._store.touch(request.enroll_id.id)
        return await self._store.report_and_next(
            request, report, skip_not_now=report.status == "NotNow"
        )
