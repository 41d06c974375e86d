"""
``GET /v1/enrollment-profile?topic=T[&url=U]``: a ``.mobileconfig`` to start from.

``url`` is the server as devices reach it (behind a TLS proxy, the proxy's
origin, which the console sends); without it, the origin this request
came to.  Both values end up in a document devices act on, so only a
plain http(s) origin (with an optional path prefix) and an MDM topic are
taken; anything else is a 400 in JSON.
"""

import re
from urllib.parse import urlsplit

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..errors import MessageError
from ..mdm.profile import enrollment_profile
from .jsonio import json_error
from .pagination import QueryArgs
from .render import async_render

# An APNs MDM topic as Apple issues them (com.apple.mgmt.External.<UUID>).
TOPIC = re.compile(r"com\.apple\.mgmt\.[A-Za-z0-9._-]{1,200}")
# Host names and IP literals, with an optional port: nothing a URL would re-read.
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
PATH = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*")
MAX_URL = 2000


def profile_topic(value: str | None) -> str:
    if not value:
        raise MessageError("missing required query parameter: topic")
    if not TOPIC.fullmatch(value):
        raise MessageError(f"topic must be an MDM push topic (com.apple.mgmt.…), not {value!r}")
    return value


def profile_base_url(value: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash, or a 400."""
    refused = MessageError(
        f"url must be the server's http(s) address, e.g. https://mdm.example.org, not {value!r}"
    )
    # urlsplit would quietly drop tabs and newlines: refuse them instead.
    if len(value) > MAX_URL or not value.isascii() or not value.isprintable() or " " in value:
        raise refused
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment or "?" in value:
        raise refused
    if "@" in parts.netloc or not HOST.fullmatch(parts.netloc) or not PATH.fullmatch(parts.path):
        raise refused
    try:
        port = parts.port
    except ValueError:
        raise refused from None
    if port == 0 or not parts.hostname:
        raise refused
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def request_origin(request: Request) -> str:
    """The scheme and Host this request came with."""
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip()
    if not HOST.fullmatch(host):
        raise MessageError("url must be given: this request's Host header names no host")
    return ("https" if request.isSecure() else "http") + "://" + host


class EnrollmentProfileResource(Resource):
    isLeaf = True

    def __init__(self, checkin: bool):
        """``checkin``: the server has --checkin (a separate CheckInURL)."""
        super().__init__()
        self._checkin = checkin

    @async_render
    async def render_GET(self, request: Request) -> bytes:
        try:
            args = QueryArgs.of(request)
            args.refuse_unknown(("topic", "url"))
            topic = profile_topic(args.one("topic"))
            url = args.one("url")
            base_url = profile_base_url(request_origin(request) if url is None else url)
        except MessageError as e:
            return json_error(request, e)
        request.setHeader(b"content-type", b"application/x-apple-aspen-config")
        request.setHeader(
            b"content-disposition", b'attachment; filename="enroll.mobileconfig"'
        )
        request.nanomdm_context["outcome"] = "enrollment profile for " + topic
        return enrollment_profile(base_url, topic, self._checkin)
