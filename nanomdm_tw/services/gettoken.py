"""
GetToken: one handler per TokenServiceType, as NanoMDM's token mux.

A device asks for a token of a service (``com.apple.maid`` for Managed
Apple IDs, for example) with a GetToken check-in; the registered handler
makes the token and the device gets ``{"TokenData": <data>}``.  Embedding
code registers handlers on the server's registry::

    service.get_token_registry.register("com.example.token", handler)

With no handler for the type the device gets a 500, as from NanoMDM.
"""

import plistlib

from twisted.logger import Logger
from zope.interface import Interface, implementer

from ..errors import HTTPStatusError
from ..mdm.messages import GetToken
from ..mdm.request import MDMRequest


class IGetTokenHandler(Interface):
    async def get_token(request: MDMRequest, message: GetToken) -> bytes:
        """The TokenData for this request; raise HTTPStatusError to refuse."""


def token_data_plist(token_data: bytes) -> bytes:
    """The GetToken answer: ``<dict><key>TokenData</key><data>…</data></dict>``."""
    return plistlib.dumps({"TokenData": token_data})


@implementer(IGetTokenHandler)
class StaticToken:
    """Always the same token: for tests and for services with a fixed token."""

    def __init__(self, token_data: bytes):
        self._token_data = token_data

    async def get_token(self, request: MDMRequest, message: GetToken) -> bytes:
        return self._token_data


class GetTokenRegistry:
    _log = Logger()

    def __init__(self) -> None:
        self._handlers: dict[str, IGetTokenHandler] = {}

    def register(self, token_service_type: str, handler: IGetTokenHandler) -> None:
        """Route one TokenServiceType to ``handler``; each type has one handler."""
        if not token_service_type:
            raise ValueError("GetToken: empty TokenServiceType")
        if not IGetTokenHandler.providedBy(handler):
            raise TypeError("GetToken: the handler must provide IGetTokenHandler")
        if token_service_type in self._handlers:
            raise ValueError("GetToken: a handler is already registered for " + token_service_type)
        self._handlers[token_service_type] = handler

    async def answer(self, request: MDMRequest, message: GetToken) -> bytes:
        """The plist answer of the handler registered for the message's type."""
        handler = self._handlers.get(message.token_service_type)
        if handler is None:
            self._log.info(
                "GetToken: no handler for TokenServiceType={token_service_type}"
                " enrollment_id={enrollment_id} trace_id={trace_id}",
                token_service_type=message.token_service_type,
                enrollment_id=request.enroll_id.id,
                trace_id=request.trace_id,
            )
            raise HTTPStatusError(
                "no GetToken handler for TokenServiceType " + message.token_service_type, 500
            )
        token_data = await handler.get_token(request, message)
        if not isinstance(token_data, bytes):
            raise TypeError("GetToken handler answered no bytes for " + message.token_service_type)
        return token_data_plist(token_data)
