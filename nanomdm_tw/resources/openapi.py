"""
``GET /v1/openapi.yaml``: the API's OpenAPI document, as installed with the package.

Clients and tools (code generators, schemathesis) read the description of
the very server they talk to; docs/openapi.yaml is a link to the same file.
"""

from importlib.resources import files

from twisted.web.resource import Resource
from twisted.web.server import Request


def openapi_document() -> bytes:
    return files("nanomdm_tw").joinpath("openapi.yaml").read_bytes()


class OpenAPIResource(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self._document = openapi_document()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/yaml")
        return self._document
