"""
nanomdm-bench's big-report phase: Idle latency while 20 MB command reports arrive.

An InstalledApplicationList result from a managed Mac can be tens of
megabytes.  Decoding it takes seconds; if that happened on the reactor
thread, every other device would wait that long.  This phase measures Idle
check-ins alone, then the same Idle check-ins while a few devices send big
reports in a loop over their own connections, and compares the two.
"""

import plistlib
import time
import uuid
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from .bench_report import Figure, columns
from .loadgen import HOST, Connection, raw_request

ALONE = "Idle alone"


def installed_applications(size: int) -> list[dict[str, Any]]:
    """An InstalledApplicationList of about ``size`` bytes as an XML plist."""
    def app(n: int) -> dict[str, Any]:
        return {
            "BundleSize": 100_000_000 + n,
            "DynamicSize": 2_000_000 + n,
            "ExternalVersionIdentifier": 800_000_000 + n,
            "HasUpdateAvailable": False,
            "Identifier": f"com.example.vendor{n % 97}.app{n:06d}",
            "Installing": False,
            "IsAppClip": False,
            "IsValidated": True,
            "Name": f"Example Application {n}",
            "ShortVersion": f"{n % 10}.{n % 7}.{n % 5}",
            "Version": str(1000 + n),
        }

    per_app = len(plistlib.dumps([app(0)])) - len(plistlib.dumps([]))
    return [app(n) for n in range(max(1, size // per_app))]


def big_report(device, size: int) -> bytes:
    """One device's signed Acknowledged InstalledApplicationList report, as sent on the wire."""
    prepared = device.prepare_report(
        "Acknowledged",
        str(uuid.uuid4()).upper(),
        RequestType="InstalledApplicationList",
        InstalledApplicationList=installed_applications(size),
    )
    return raw_request(prepared)


class BigReportSenders:
    """Each sender sends its big report, waits for the answer, and sends it again."""

    def __init__(self, reactor, port: int, reports: list[bytes]):
        self._reactor = reactor
        self._port = port
        self._reports = reports
        self._running = False
        self._loops: list[Deferred] = []
        self.answered = 0
        self.errors = 0

    async def start(self) -> None:
        """Start sending; return once every sender has had one answer (the steady state)."""
        endpoint = TCP4ClientEndpoint(self._reactor, HOST, self._port)
        self._running = True
        self._loops = [
            Deferred.fromCoroutine(self._send(await connectProtocol(endpoint, Connection()), raw))
            for raw in self._reports
        ]
        while self.answered + self.errors < len(self._reports):
            await task.deferLater(self._reactor, 0.05)

    async def _send(self, connection: Connection, raw: bytes) -> None:
        try:
            while self._running:
                code, _ = await connection.request(raw)
                if code == 200:
                    self.answered += 1
                else:
                    self.errors += 1
        finally:
            connection.transport.loseConnection()

    async def stop(self) -> None:
        """Let each sender's report in flight be answered, then close."""
        self._running = False
        await gatherResults(self._loops)


async def idle_beside_big_reports(bench, server, port: int, target: str, devices) -> list[Figure]:
    """Idle alone, then Idle while --big-reports devices send --big-report-mb reports."""
    args = bench.args
    size = args.big_report_mb * 1024 * 1024
    print(f"  preparing {args.big_reports} reports of {args.big_report_mb} MB...", flush=True)
    reports = [big_report(d.sim, size) for d in devices[: args.big_reports]]
    # Long enough that big reports are decoded while Idle check-ins go on.
    sequences = [[d.idle] * args.rounds * 4 for d in devices]
    alone = await bench.measure(server, port, target, ALONE, sequences)
    senders = BigReportSenders(bench.reactor, port, reports)
    started = time.monotonic()
    await senders.start()
    beside = await bench.measure(
        server, port, target, f"Idle + {args.big_report_mb} MB reports", sequences
    )
    await senders.stop()
    seconds = time.monotonic() - started
    print(
        f"  {senders.answered} big reports answered in {seconds:.1f} s"
        f" ({senders.errors} errors)",
        flush=True,
    )
    beside.errors += senders.errors
    return [alone, beside]


def big_report_table(figures: list[Figure]) -> str:
    """Per server run: Idle p50/p99 alone and beside big reports, with the ratios."""
    rows = [("target", "phase", "p50 ms", "alone", "ratio", "p99 ms", "alone", "ratio")]
    alone: Figure | None = None
    for f in figures:
        if f.phase == ALONE:
            alone = f
        elif alone is not None and f.phase.startswith("Idle + ") and f.target == alone.target:
            rows.append(
                (f.label, f.phase,
                 f"{f.p50_ms:.2f}", f"{alone.p50_ms:.2f}", f"{f.p50_ms / alone.p50_ms:.1f}x",
                 f"{f.p99_ms:.2f}", f"{alone.p99_ms:.2f}", f"{f.p99_ms / alone.p99_ms:.1f}x")
            )  # fmt: skip
    return columns(rows) if len(rows) > 1 else ""
