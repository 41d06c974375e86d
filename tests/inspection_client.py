"""
What the inspection API's end-to-end tests share: a server on each storage
backend, and a client that calls the API and checks the JSON framing.
"""

import json
from pathlib import Path

import pytest

from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.sim import SimulatedDevice, make_identity

from . import mysqlserver, pgsqlserver

BACKENDS = ["inmem", "sqlite", "mysql", "pgsql"]


@pytest.fixture(params=BACKENDS)
def storage_spec(request, tmp_path: Path):
    """A StorageSpec for ``serve``; MySQL and PostgreSQL in throwaway databases."""
    name = request.param
    if name in ("inmem", "sqlite"):
        yield StorageSpec(name, str(tmp_path / "db") if name == "sqlite" else "", "")
        return
    database = (mysqlserver if name == "mysql" else pgsqlserver).ThrowawayDatabase()
    try:
        yield StorageSpec(name, database.dsn, "")
    finally:
        database.drop()


async def call(server, method: str, path: str, body: bytes | None = None):
    """(status, JSON document or None) of one API request; JSON answers are NanoMDM-framed."""
    answer = await server.http.request(
        method, server.url + path, data=body, auth=server.api_auth()
    )
    content = await answer.content()
    if answer.code == 204:
        assert content == b""
        return 204, None
    assert answer.headers.getRawHeaders("content-type") == ["application/json"], content
    document = json.loads(content)
    assert content == (json.dumps(document, indent="\t") + "\n").encode()
    return answer.code, document


def device(server, **kwargs) -> SimulatedDevice:
    return SimulatedDevice.create(
        server.url, make_identity(server.ca), http=server.http, **kwargs
    )
