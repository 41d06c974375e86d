"""
IDs carried in the URL path, as NanoMDM's API takes them.

NanoMDM strips its route prefix and uses the rest of the path whole: one
enrollment or command ID (which may hold ``/``), or comma-separated
enrollment IDs for the fan-outs.
"""

from urllib.parse import unquote

from twisted.web.server import Request

from ..errors import MessageError
from .clienttext import checked_text


def path_text(segments: list[bytes]) -> str:
    """The rest of the URL path, percent-decoded."""
    return checked_text(unquote(b"/".join(segments).decode("utf-8", "replace")), "the URL path")


def enrollment_ids(request: Request) -> list[str]:
    """The comma-separated enrollment IDs that make up the rest of the path."""
    ids = [i for i in path_text(request.postpath).split(",") if i]
    if not ids:
        raise MessageError("no enrollment IDs in the URL path")
    return ids
