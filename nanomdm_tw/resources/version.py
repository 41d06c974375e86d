"""``/version``: the running server's version, as NanoMDM answers it."""

import json

from twisted.web.resource import Resource
from twisted.web.server import Request

from .. import __version__


class VersionResource(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"version": __version__}).encode() + b"\n"
