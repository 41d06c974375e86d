"""
Request bodies with a size limit.

twisted.web buffers a whole body before rendering; ``LimitedRequest`` stops
keeping bytes once a body passes the site's ``max_body_size`` so an
oversized upload costs no memory, and ``read_body`` then answers 413.
The default is generous: InstalledApplicationList results can be large.
"""

import time

from twisted.web.server import Request

from ..errors import HTTPStatusError

DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024


class LimitedRequest(Request):
    body_too_large = False
    received = 0  # bytes of body so far: its length once rendering starts
    arrived = 0.0  # time.monotonic() when its headers were in

    def _limit(self) -> int:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_body_size", DEFAULT_MAX_BODY_SIZE)

    def gotLength(self, length: int | None) -> None:
        self.arrived = time.monotonic()
        if length is not None and length > self._limit():
            self.body_too_large = True
            length = 0  # keep an empty in-memory buffer, never a temp file
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self.received += len(data)
        if self.received > self._limit():
            self.body_too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)


def read_body(request: Request) -> bytes:
    """The request body, or HTTP 413 when it was over the limit."""
    if getattr(request, "body_too_large", False):
        raise HTTPStatusError("request body too large", 413)
    request.content.seek(0)
    return request.content.read()
