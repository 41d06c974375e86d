"""
Answers for paths and methods nobody serves, as NanoMDM (Go's net/http) gives them.

twisted.web answers a method a resource does not render with an HTML page,
and with "501 Huh?" for methods outside GET/HEAD/POST; an unknown path gets
an HTML 404.  Clients written against NanoMDM expect Go's plain answers: 405
naming the allowed methods in ``Allow``, and "404 page not found".
Resources that implement ``render`` themselves take every method.
"""

import functools

from twisted.web.resource import Resource

from .body import LimitedRequest


NOT_ALLOWED_BODY = b"Method Not Allowed\n"
NOT_FOUND_BODY = b"404 page not found\n"


@functools.cache
def allowed_methods(resource_type: type) -> tuple[bytes, ...] | None:
    """The methods a resource class renders (HEAD with GET), or None if it takes any."""
    if getattr(resource_type, "render", Resource.render) is not Resource.render:
        return None
    methods = {
        name[len("render_") :].encode("ascii")
        for name in dir(resource_type)
        if name.startswith("render_") and name != "render_HEAD"
    }
    if b"GET" in methods:
        methods.add(b"HEAD")  # twisted.web answers HEAD with render_GET
    return tuple(sorted(methods))


def methods_for(resrc, request) -> tuple[bytes, ...] | None:
    """
    The methods ``resrc`` serves at this request's path: its class's, unless
    it narrows them with ``allowed_methods_for(request)`` (one resource
    behind two paths, such as ``/v1/enqueue`` and ``/v1/enqueue/{ids}``).
    """
    narrow = getattr(resrc, "allowed_methods_for", None)
    return narrow(request) if narrow is not None else allowed_methods(type(resrc))


def not_allowed(request, allowed: tuple[bytes, ...]) -> bytes:
    """Go's 405 answer, naming the ``allowed`` methods; the body to write."""
    request.setResponseCode(405)
    request.setHeader(b"allow", b", ".join(allowed))
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return NOT_ALLOWED_BODY


class NotFound(Resource):
    isLeaf = True

    def render(self, request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return NOT_FOUND_BODY


class Directory(Resource):
    """An inner node of the tree (``/``, ``/v1``): its children, else a plain 404."""

    def getChild(self, path: bytes, request) -> Resource:
        return NotFound()

    def render(self, request) -> bytes:
        return NotFound().render(request)


class MDMServerRequest(LimitedRequest):
    """
    Our request: a body limit, a plain 405 for a method the resource lacks,
    and no Content-Type where the answer sets none (an empty 200 to a
    check-in), as Go's server; twisted.web's default is text/html.
    """

    defaultContentType = None

    def render(self, resrc) -> None:
        allowed = methods_for(resrc, self)
        if allowed is None or self.method in allowed:
            super().render(resrc)
            return
        body = not_allowed(self, allowed)
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()
