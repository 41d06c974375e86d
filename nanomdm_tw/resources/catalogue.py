"""
``GET /v1/catalogue``: the commands ``nanomdm-cmdr`` offers, for a console's forms.

The same entries (mdm/catalogue.py) that ``POST /v1/enqueue`` builds from
its ``request_type`` form, so a form can only offer what the server builds.
"""

import json

from twisted.web.resource import Resource
from twisted.web.server import Request

from ..mdm.catalogue import CATALOGUE, Argument, CommandSpec


def argument_document(argument: Argument) -> dict:
    document = {
        "key": argument.key,
        "kind": argument.kind,
        "help": argument.help,
        "required": argument.required,
        "default": argument.default,
    }
    if argument.choices:
        document["choices"] = list(argument.choices)
    return document


def command_document(spec: CommandSpec) -> dict:
    return {
        "request_type": spec.request_type,
        "summary": spec.summary,
        "read_only": spec.read_only,
        "destructive": spec.destructive,
        "arguments": [argument_document(argument) for argument in spec.arguments],
    }


class CatalogueResource(Resource):
    """The catalogue never changes while the server runs: encoded once."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        document = {"commands": [command_document(spec) for spec in CATALOGUE.values()]}
        self._body = (json.dumps(document, indent="\t") + "\n").encode("utf-8")

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return self._body
