"""
The benchmark's load generator: a subprocess replaying prepared requests.

nanomdm-bench signs every request up front and pickles a ``Workload`` per
load-generator process; each replays its raw requests over keep-alive
HTTP/1.1 connections from a common start time and pickles back a
``WorkerResult`` (latencies, errors, its own CPU).
"""

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

HOST = "127.0.0.1"


def raw_request(prepared) -> bytes:
    """A prepared device request (tools.sim.Prepared) as its HTTP/1.1 bytes."""
    url = urlsplit(prepared.url)
    lines = [f"PUT {url.path} HTTP/1.1", f"Host: {url.netloc}"]
    lines += [
        f"{name}: {value}"
        for name, values in prepared.headers.items()
        for value in values
    ]
    lines.append(f"Content-Length: {len(prepared.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + prepared.body


class Connection(Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self._buffer = b""
        self._waiting: Deferred | None = None

    def request(self, raw: bytes) -> Deferred:
        self._waiting = Deferred()
        self.transport.write(raw)
        return self._waiting

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        parsed = _parse_response(self._buffer)
        if parsed is not None and self._waiting is not None:
            code, body, used = parsed
            self._buffer = self._buffer[used:]
            waiting, self._waiting = self._waiting, None
            waiting.callback((code, body))

    def connectionLost(self, reason: object) -> None:
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.errback(reason)


def _parse_response(data: bytes) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the first whole response in ``data``, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].split(b"\r\n")
    code = int(head[0].split(b" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    position = end + 4
    if b"content-length" in headers:
        stop = position + int(headers[b"content-length"])
        return (code, data[position:stop], stop) if len(data) >= stop else None
    if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
        return code, b"", position
    body = b""
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(data[position:line_end].split(b";")[0], 16)
        start = line_end + 2
        if len(data) < start + size + 2:
            return None
        if size == 0:
            return code, body, start + 2
        body += data[start : start + size]
        position = start + size + 2


@dataclass
class Workload:
    """
    What one load generator replays: per device, requests sent one after another.

    Pickled as a plain dict, since ``__main__`` is a different module in each process.
    """

    port: int
    concurrency: int
    start_at: float  # time.monotonic() value; the same clock in every process
    sequences: list[list[bytes]]
    untimed_first: bool  # the first request of each sequence only sets the stage


@dataclass
class WorkerResult:
    latencies: list[float]
    errors: int
    started: float
    finished: float
    cpu_seconds: float


async def _replay(reactor, work: Workload) -> WorkerResult:
    endpoint = TCP4ClientEndpoint(reactor, HOST, work.port)
    connections = [
        await connectProtocol(endpoint, Connection()) for _ in range(work.concurrency)
    ]
    sequences = iter(work.sequences)
    latencies: list[float] = []
    errors = 0

    async def drive(connection: Connection) -> None:
        nonlocal errors
        for sequence in sequences:
            for index, raw in enumerate(sequence):
                sent = time.monotonic()
                code, _ = await connection.request(raw)
                if code != 200:
                    errors += 1
                if index or not work.untimed_first:
                    latencies.append(time.monotonic() - sent)

    await task.deferLater(reactor, max(0.0, work.start_at - time.monotonic()))
    cpu_before = time.process_time()
    started = time.monotonic()
    await gatherResults([Deferred.fromCoroutine(drive(c)) for c in connections])
    finished = time.monotonic()
    for connection in connections:
        connection.transport.loseConnection()
    return WorkerResult(
        latencies, errors, started, finished, time.process_time() - cpu_before
    )


def worker_main(path: str) -> None:
    work = Workload(**pickle.loads(Path(path).read_bytes()))

    async def run(reactor) -> None:
        result = await _replay(reactor, work)
        Path(path + ".result").write_bytes(pickle.dumps(vars(result)))

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
