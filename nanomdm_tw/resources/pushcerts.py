"""
``GET /v1/pushcerts``: every stored push certificate's topic and expiry.

An expired push certificate silently stops every push of its topic; the
console warns weeks before.  A stored certificate that cannot be read (an
import gone wrong) is listed with the error instead of hiding the others.
"""

import datetime
from collections.abc import Callable

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..crypto.pushcert import certificate_not_after
from ..errors import MessageError
from ..storage.interfaces import IPushCertStore
from .jsonio import json_body, rfc3339
from .render import async_render

ONE_DAY = datetime.timedelta(days=1)

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


async def push_cert_entries(store: IPushCertStore, now: datetime.datetime) -> list[dict]:
    """``{"topic", "not_after", "days_left"}`` (or ``"error"``) per stored cert, by topic."""
    entries = []
    for push_cert in await store.retrieve_push_certs():
        entry: dict = {"topic": push_cert.topic}
        try:
            not_after = certificate_not_after(push_cert.cert_pem)
        except MessageError as e:
            entry["error"] = str(e)
        else:
            entry["not_after"] = rfc3339(not_after)
            entry["days_left"] = (not_after - now) // ONE_DAY  # floor: negative once expired
        entries.append(entry)
    return entries


class PushCertsResource(Resource):
    isLeaf = True

    def __init__(self, store: IPushCertStore, clock: Clock = utc_now):
        super().__init__()
        self._store = store
        self._clock = clock

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        entries = await push_cert_entries(self._store, self._clock())
        return json_body(request, {"push_certs": entries})
