"""
The async_render adapter over real loopback HTTP: handlers that answer at
once and handlers that wait get the same answers, errors and log line; a
waiting handler is cancelled when its client goes away.
"""

from contextlib import asynccontextmanager

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from nanomdm_tw.errors import HTTPStatusError
from nanomdm_tw.resources.render import async_render

from .logevents import request_lines


class Handlers(Resource):
    """/<how>/<what>: answer ``what`` at once or after ``self.release`` fires."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.release: Deferred = Deferred()
        self.waiting = 0
        self.cancelled: list[bool] = []
        self.release.addErrback(lambda f: self.cancelled.append(f.check(CancelledError)))

    @async_render
    async def render_GET(self, request):
        how, what = request.postpath
        request.nanomdm_context["outcome"] = what.decode()
        if how == b"wait":
            self.waiting += 1
            await self.release
        if what == b"teapot":
            raise HTTPStatusError("short and stout", 418)
        if what == b"bug":
            raise RuntimeError("a bug")
        if what == b"empty":
            return None
        return b"answer:" + what


@asynccontextmanager
async def site(handlers: Handlers):
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(handlers)
    )
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        yield HTTPClient(Agent(reactor, pool=pool)), port.getHost().port
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


async def get(http: HTTPClient, port: int, path: str) -> tuple[int, bytes]:
    answer = await http.get(f"http://127.0.0.1:{port}{path}")
    return answer.code, await answer.content()


@pytest.mark.parametrize("how", ["now", "wait"])
@pytest_twisted.ensureDeferred
async def test_answers_and_errors(how: str, log_events: list[dict]) -> None:
    handlers = Handlers()
    handlers.release.callback(None)
    expected = {
        "ok": (200, b"answer:ok"),
        "empty": (200, b""),
        "teapot": (418, b"short and stout\n"),
        "bug": (500, b"internal server error\n"),
    }
    async with site(handlers) as (http, port):
        for what, answer in expected.items():
            assert await get(http, port, f"/{how}/{what}") == answer
    lines = request_lines(log_events)
    assert [line.split(" enrollment_id=")[0] for line in lines] == [
        f"GET /{how}/ok 200 ok",
        f"GET /{how}/empty 200 empty",
        f"GET /{how}/teapot 418 short and stout",
        f"GET /{how}/bug 500 bug",
    ]
    assert all(" trace_id=" in line and line.endswith("ms") for line in lines)
    failures = [e for e in log_events if e.get("log_failure") is not None]
    assert [e["log_failure"].check(RuntimeError) for e in failures] == [RuntimeError]


@pytest_twisted.ensureDeferred
async def test_waiting_handler_answers_when_released(log_events: list[dict]) -> None:
    handlers = Handlers()
    async with site(handlers) as (http, port):
        answer = get(http, port, "/wait/later")
        assert not request_lines(log_events)
        handlers.release.callback(None)
        assert await answer == (200, b"answer:later")
    assert request_lines(log_events)[0].startswith("GET /wait/later 200 later ")


class _Client(Protocol):
    def __init__(self) -> None:
        self.lost: Deferred = Deferred()

    def connectionLost(self, reason: object) -> None:
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_client_gone_cancels_the_waiting_handler(log_events: list[dict]) -> None:
    handlers = Handlers()
    async with site(handlers) as (_, port):
        client = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port), _Client()
        )
        client.transport.write(b"GET /wait/abandoned HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(lambda: handlers.waiting)
        client.transport.loseConnection()
        await client.lost
        await until(lambda: handlers.cancelled)
    assert handlers.cancelled == [CancelledError]
    assert request_lines(log_events)[0].startswith("GET /wait/abandoned disconnected abandoned ")


async def until(condition, turns: int = 500) -> None:
    """Let the reactor run until ``condition()`` holds (a bounded number of turns)."""
    for _ in range(turns):
        if condition():
            return
        tick: Deferred = Deferred()
        reactor.callLater(0.01, tick.callback, None)
        await tick
