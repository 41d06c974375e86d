"""A method a resource does not serve: 405 with Allow, as NanoMDM; never Twisted's HTML."""

from pathlib import Path

import pytest
import pytest_twisted

from .serving import serve


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("DELETE", "/v1/pushcert", "GET, HEAD, PUT"),
        ("POST", "/v1/pushcert", "GET, HEAD, PUT"),
        ("GET", "/v1/enqueue/A", "POST, PUT"),
        ("PATCH", "/v1/escrowkeyunlock", "POST"),
        ("GET", "/mdm", "POST, PUT"),
        ("DELETE", "/mdm", "POST, PUT"),
        ("PUT", "/version", "GET, HEAD"),
        # The JSON-body fan-outs' own paths, without IDs.
        ("PUT", "/v1/enqueue", "POST"),
        ("GET", "/v1/push", "POST"),
        ("PUT", "/v1/push", "POST"),
        # Behind the API guard, which itself takes any method.
        ("GET", "/migration", "POST, PUT"),
        ("TRACE", "/migration", "POST, PUT"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_unserved_method_is_405_with_allow(
    tmp_path: Path, method: str, path: str, allow: str
) -> None:
    async with serve(tmp_path, migration=True) as server:
        answer = await server.http.request(
            method, server.url + path, auth=server.api_auth(), data=b"x"
        )
        assert answer.code == 405
        assert answer.headers.getRawHeaders("allow") == [allow]
        assert await answer.content() == b"Method Not Allowed\n"
        assert answer.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]


@pytest_twisted.ensureDeferred
async def test_api_key_is_checked_before_the_method(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.request(
            "DELETE", server.url + "/v1/pushcert", auth=("nanomdm", "wrong")
        )
        assert answer.code == 401


@pytest.mark.parametrize("path", ["/", "/v1/"])
@pytest_twisted.ensureDeferred
async def test_inner_nodes_are_not_found(tmp_path: Path, path: str) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.get(server.url + path, auth=server.api_auth())
        assert answer.code == 404
        assert await answer.content() == b"404 page not found\n"


@pytest_twisted.ensureDeferred
async def test_served_methods_still_answer(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        assert (await server.http.get(server.url + "/version")).code == 200
        head = await server.http.head(server.url + "/version")
        assert head.code == 200
