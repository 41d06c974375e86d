"""
``/admin/``: the admin console's static files, served from the package.

The files hold no data (everything comes from ``/v1`` with the API key), so
they are served without authentication.  Only the files found in the
package folder at start are served, looked up by their exact relative path:
no directory listing, no path built from the request, so ``..`` or an
absolute path can never reach another file.  Every answer, the 404 and the
redirect included, carries headers that keep the console from running
anything but its own scripts or being framed.
"""

from importlib import resources
from pathlib import PurePosixPath

from twisted.web.resource import Resource
from twisted.web.server import Request

from .methods import NOT_FOUND_BODY, not_allowed

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}

CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    b" connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none';"
    b" frame-ancestors 'none'"
)

CONSOLE_HEADERS = {
    b"content-security-policy": CONTENT_SECURITY_POLICY,
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-cache",
}

ALLOWED = (b"GET", b"HEAD")


def console_files(folder) -> dict[str, tuple[bytes, bytes]]:
    """
    ``{relative path: (content type, bytes)}`` for the servable files under
    ``folder`` (a Traversable); hidden files and unknown types are left out.
    """
    found = {}

    def walk(node, parts: tuple[str, ...]) -> None:
        for child in node.iterdir():
            if child.name.startswith("."):
                continue
            if child.is_dir():
                walk(child, parts + (child.name,))
                continue
            content_type = CONTENT_TYPES.get(PurePosixPath(child.name).suffix)
            if content_type is not None:
                found["/".join(parts + (child.name,))] = (content_type, child.read_bytes())

    walk(folder, ())
    return found


class AdminResource(Resource):
    """``/admin`` (a redirect), ``/admin/`` (index.html) and ``/admin/<file>``."""

    isLeaf = True

    def __init__(self, files: dict[str, tuple[bytes, bytes]] | None = None):
        """``files``: as ``console_files`` makes them; the package's ``admin`` folder by default."""
        super().__init__()
        if files is None:
            files = console_files(resources.files("nanomdm_tw") / "admin")
        self._files = files

    def render(self, request: Request) -> bytes:
        for name, value in CONSOLE_HEADERS.items():
            request.setHeader(name, value)
        body = self._answer(request)
        if request.method == b"HEAD":  # the length of what GET would send, and no body
            request.setHeader(b"content-length", b"%d" % len(body))
            return b""
        return body

    def _answer(self, request: Request) -> bytes:
        if request.method not in ALLOWED:
            return not_allowed(request, ALLOWED)
        if not request.postpath:  # /admin: relative links need the slash
            request.setResponseCode(301)
            request.setHeader(b"location", b"/admin/")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Moved Permanently: /admin/\n"
        name = b"/".join(request.postpath).decode("utf-8", "replace") or "index.html"
        found = self._files.get(name)
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return NOT_FOUND_BODY
        content_type, body = found
        request.setHeader(b"content-type", content_type)
        return body
