"""
``POST /v1/escrowkeyunlock``: Activation Lock bypass through Apple.

The API client posts NanoMDM's form fields; Apple wants some of them in the
URL query and the rest as a form body, over mutual TLS with the topic's push
certificate.  Apple's status, headers and body are passed back unchanged;
no answer within --http-timeout is a 502, as an unreachable Apple is.
"""

from urllib.parse import parse_qs, urlencode

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.web.client import Agent
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..crypto.tls import ClientCertificatePolicy
from ..deadline import within
from ..errors import MessageError
from ..settings import APPLE_ESCROW_KEY_UNLOCK_URL, DEFAULT_HTTP_TIMEOUT
from ..storage.interfaces import IPushCertStore
from .api import json_body
from .body import read_body
from .clienttext import checked_text
from .render import async_render


QUERY_FIELDS = ("serial", "productType", "imei", "imei2", "meid")
FORM_FIELDS = ("orgName", "guid", "escrowKey")
REQUIRED_FIELDS = ("serial", "productType", "orgName", "guid", "escrowKey")
PASSED_HEADERS = (b"content-type",)


def split_parameters(body: bytes) -> tuple[str, dict[str, str], dict[str, str]]:
    """The topic, Apple's query parameters and Apple's form parameters."""
    try:
        values = {
            k: v[0]
            for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()
        }
    except UnicodeDecodeError:
        raise MessageError("form is not UTF-8")
    for name, value in values.items():
        checked_text(value, f"form field {name}")
    if any(not values.get(name) for name in REQUIRED_FIELDS):
        raise MessageError("invalid or missing parameters")
    topic = values.get("topic", "")
    if not topic:
        raise MessageError("empty topic")
    query = {k: values[k] for k in QUERY_FIELDS if values.get(k)}
    form = {k: values[k] for k in FORM_FIELDS}
    return topic, query, form


async def _exchange(http: HTTPClient, url: str, form: dict[str, str]) -> tuple[IResponse, bytes]:
    """Apple's answer and its whole body."""
    answer = await http.post(
        url,
        data=urlencode(form).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return answer, await answer.content()


class EscrowKeyUnlockResource(Resource):
    isLeaf = True

    def __init__(
        self,
        store: IPushCertStore,
        reactor,
        url: str = APPLE_ESCROW_KEY_UNLOCK_URL,
        extra_ca_pem: bytes | None = None,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
    ):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self._store = store
        self._reactor = reactor
        self._url = url
        self._extra_ca_pem = extra_ca_pem
        self._timeout = timeout

    @async_render
    async def render_POST(self, request: Request) -> bytes:
        try:
            topic, query, form = split_parameters(read_body(request))
        except MessageError as e:
            return json_body(request, {"error": str(e)}, e.status)
        push_cert = await self._store.retrieve_push_cert(topic)
        if push_cert is None:
            return json_body(request, {"error": f"no push certificate for {topic}"}, 404)
        policy = ClientCertificatePolicy(
            push_cert.cert_pem, push_cert.key_pem, self._extra_ca_pem
        )
        http = HTTPClient(Agent(self._reactor, contextFactory=policy))
        request.nanomdm_context["outcome"] = "escrow key unlock " + query["serial"]
        exchange = Deferred.fromCoroutine(_exchange(http, self._url + "?" + urlencode(query), form))
        try:
            answer, body = await within(exchange, self._timeout, self._reactor)
        except CancelledError:
            raise
        except Exception as e:
            return json_body(request, {"error": f"escrow key unlock: {e}"}, 502)
        request.setResponseCode(answer.code)
        for name in PASSED_HEADERS:
            for value in answer.headers.getRawHeaders(name, []):
                request.responseHeaders.addRawHeader(name, value)
        return body
