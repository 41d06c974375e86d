"""
``python -m nanomdm_tw.tools.bench_push``: APNs push fan-out of a real server.

The server runs as ``twistd -n nanomdm`` in a subprocess, as nanomdm-bench
runs it, and the fake APNs (``fake_apns``) in another; the devices enroll
through the server and the push certificate is uploaded through
``PUT /v1/pushcert``.  At each fake-APNs answer delay, ``--calls`` clients
loop ``GET /v1/push/<--batch IDs>`` over the first ``--devices`` devices for
``--seconds``, then one call pushes to all ``--big`` devices.  Server CPU is
read from /proc for the server and its children, so it is the server's own
cost per push; the fake's CPU is shown apart.

Options not listed here go to nanomdm-bench's parser (``--mysql``,
``--pgsql``, ``--workers``, ``--concurrency`` of the enrollment).
"""

import argparse
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import treq
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from ..crypto.devca import DevelopmentCA, cert_pem, generate_key, key_pem
from .bench import (
    _SERVERS,
    HOST,
    Bench,
    _free_port,
    _parser,
    _Process,
    _spawn,
    _twistd,
    _wait_for,
)
from .loadgen import raw_request
from .sim import DEFAULT_TOPIC, SimulatedDevice, make_identity


@dataclass
class PushFigure:
    delay_ms: float
    load: str
    calls: int
    pushes: int
    failed: int
    seconds: float
    server_cpu: float  # CPU seconds, all server processes
    fake_cpu: float
    client_cpu: float  # this process: the /v1/push callers
    mean_streams: float  # pushes in flight at the fake, mean over the phase
    peak_streams: int

    def row(self) -> tuple[str, ...]:
        total = self.pushes + self.failed
        return (
            f"{self.delay_ms:g}",
            self.load,
            str(self.calls),
            str(self.pushes),
            str(self.failed),
            f"{self.seconds:.2f}",
            f"{total / self.seconds:,.0f}",
            f"{self.server_cpu / self.seconds:.0%}",
            f"{self.server_cpu * 1000 / max(total, 1):.3f}",
            f"{self.fake_cpu / self.seconds:.0%}",
            f"{self.client_cpu / self.seconds:.0%}",
            f"{self.mean_streams:.0f} / {self.peak_streams}",
        )


_HEADER = (
    "APNs ms",
    "load",
    "calls",
    "pushed",
    "failed",
    "wall s",
    "pushes/s",
    "server CPU",
    "CPU ms/push",
    "fake CPU",
    "client CPU",
    "streams mean/peak",
)


def _table(figures: list[PushFigure]) -> str:
    rows = [_HEADER] + [f.row() for f in figures]
    widths = [max(map(len, column)) for column in zip(*rows)]
    template = "  ".join(
        f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths)
    )
    return "\n".join(template.format(*row) for row in rows)


def _enrollments(ca: DevelopmentCA, count: int) -> tuple[list[str], list[list[bytes]]]:
    """Enrollment IDs, and each device's signed Authenticate and TokenUpdate."""
    key = generate_key("ec")  # one key, a certificate per device: fast to make
    ids, sequences = [], []
    for _ in range(count):
        sim = SimulatedDevice.create(f"http://{HOST}", make_identity(ca, key=key))
        authenticate = sim.prepare_checkin(
            "Authenticate", Topic=sim.topic, SerialNumber=sim.serial_number
        )
        ids.append(sim.id)
        sequences.append([raw_request(authenticate), raw_request(sim.prepare_token_update())])
    return ids, sequences


class PushBench:
    def __init__(self, reactor, args: argparse.Namespace, folder: Path) -> None:
        self.reactor = reactor
        self.args = args
        self.folder = folder
        self.bench = Bench(reactor, args.bench, folder)
        self.ca = DevelopmentCA.create(key_type="ec")
        self.ca.save(folder / "ca")
        self.api_key = secrets.token_hex(16)
        self.port = _free_port()
        self.control_url = ""
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = args.calls
        self.http = HTTPClient(Agent(reactor, pool=self.pool))

    async def start_fake(self) -> _Process:
        port, control_port = _free_port(), _free_port()
        argv = [sys.executable, "-m", "nanomdm_tw.tools.fake_apns", "--ca",
                str(self.folder / "ca"), "--port", str(port), "--control-port",
                str(control_port), "--streams", str(self.args.streams)]  # fmt: skip
        log = self.folder / "fake_apns.log"
        fake = _spawn(self.reactor, argv, log, self.folder)
        self.control_url = f"http://{HOST}:{control_port}/"
        await _wait_for(self.reactor, self.bench.http, self.control_url, fake, log)
        self.apns_url = f"https://{HOST}:{port}"
        return fake

    async def start_server(self) -> _Process:
        storage = self.args.storage
        argv = [_twistd(), "--pidfile=", "--logger=nanomdm_tw.logs.text_observer",
                "-n", "nanomdm",
                "--listen", f"tcp:{self.port}:interface={HOST}",
                "--ca", str(self.folder / "ca" / "ca.pem"), "--api", self.api_key,
                "--storage", storage, "--apns-url", self.apns_url,
                "--apns-ca", str(self.folder / "ca" / "ca.pem")]  # fmt: skip
        if storage != "inmem":
            argv += ["--storage-dsn", self.bench.dsn(storage),
                     "--workers", str(self.args.bench.workers)]  # fmt: skip
        return await self.bench.start(argv, self.port, f"nanomdm-{storage}")

    async def upload_push_cert(self) -> None:
        cert, key = self.ca.issue_push_certificate(DEFAULT_TOPIC)
        response = await self.http.put(
            f"http://{HOST}:{self.port}/v1/pushcert",
            data=cert_pem(cert) + key_pem(key),
            auth=("nanomdm", self.api_key),
        )
        body = await response.content()
        if response.code != 200:
            raise SystemExit(f"bench_push: PUT /v1/pushcert: {response.code} {body!r}")

    async def control(self, delay_ms: float | None = None) -> dict:
        """The fake's counts since the last call; sets its delay first if given."""
        query = "" if delay_ms is None else f"?delay_ms={delay_ms}"
        response = await self.bench.http.get(self.control_url + query)
        return await treq.json_content(response)

    async def push(self, ids: list[str]) -> tuple[int, int]:
        """One ``/v1/push`` call: (IDs pushed, IDs failed)."""
        response = await self.http.get(
            f"http://{HOST}:{self.port}/v1/push/" + ",".join(ids),
            auth=("nanomdm", self.api_key),
        )
        document = await treq.json_content(response)
        pushed = sum(1 for r in document.get("status", {}).values() if "push_result" in r)
        return pushed, len(ids) - pushed

    async def phase(
        self, server: _Process, fake: _Process, delay_ms: float, batches: list[list[str]],
        clients: int, seconds: float | None,
    ) -> PushFigure:  # fmt: skip
        """``clients`` loops over ``batches`` for ``seconds`` (None: each batch once)."""
        await self.push(batches[0][:1])  # the APNs connection is up
        await self.control(delay_ms)
        totals = [0, 0, 0]  # calls, pushed, failed
        started = time.monotonic()
        deadline = started + (seconds or float("inf"))
        server_cpu, fake_cpu = server.cpu_seconds(), fake.cpu_seconds()
        client_cpu = time.process_time()

        async def loop(index: int) -> None:
            for n in range(index, len(batches) if seconds is None else sys.maxsize, clients):
                if time.monotonic() >= deadline:
                    return
                pushed, failed = await self.push(batches[n % len(batches)])
                totals[0] += 1
                totals[1] += pushed
                totals[2] += failed

        await gatherResults([Deferred.fromCoroutine(loop(i)) for i in range(clients)])
        wall = time.monotonic() - started
        server_cpu = server.cpu_seconds() - server_cpu
        fake_cpu = fake.cpu_seconds() - fake_cpu
        client_cpu = time.process_time() - client_cpu
        stats = await self.control()
        load = f"{clients} x {len(batches[0])} IDs"
        streams = stats["mean_open_streams"], stats["peak_open_streams"]
        return PushFigure(
            delay_ms, load, *totals, wall, server_cpu, fake_cpu, client_cpu, *streams
        )


async def _main(reactor, args: argparse.Namespace) -> None:
    figures = []
    with tempfile.TemporaryDirectory(prefix="nanomdm-bench-push-") as tmp:
        run = PushBench(reactor, args, Path(tmp))
        count = max(args.devices, args.big)
        print(f"preparing {count} device enrollments...", flush=True)
        ids, sequences = _enrollments(run.ca, count)
        print(f"starting the fake APNs and the server (storage {args.storage})...", flush=True)
        fake = await run.start_fake()
        server = await run.start_server()
        try:
            print(f"enrolling {count} devices through the server...", flush=True)
            enroll = await run.bench.measure(
                server, run.port, args.storage, "enroll", sequences
            )
            if enroll.errors:
                raise SystemExit(f"bench_push: {enroll.errors} enrollment errors")
            await run.upload_push_cert()
            fan_out = ids[: args.devices]
            batches = [fan_out[i : i + args.batch] for i in range(0, len(fan_out), args.batch)]
            for delay in args.delays:
                print(f"fan-out at {delay:g} ms APNs latency: {args.calls} clients looping"
                      f" /v1/push of {args.batch} IDs for {args.seconds:g} s...", flush=True)  # fmt: skip
                figures.append(await run.phase(
                    server, fake, delay, batches, args.calls, args.seconds))  # fmt: skip
                print(f"one /v1/push of {args.big} IDs at {delay:g} ms...", flush=True)
                figures.append(await run.phase(server, fake, delay, [ids[: args.big]], 1, None))
        finally:
            await run.pool.closeCachedConnections()
            await run.bench.pool.closeCachedConnections()
            await server.stop()
            await fake.stop()
            for storage, database in run.bench.databases.items():
                _SERVERS[storage][0](getattr(args.bench, storage), f"DROP DATABASE {database}")
    print()
    print(f"{args.devices} devices on one topic for the fan-out ({args.big} in the big call),"
          f" storage {args.storage}, fake APNs stream limit {args.streams}")  # fmt: skip
    print(_table(figures))
    print(
        "CPU ms/push: CPU time of all server processes per push (pushed + failed).\n"
        "streams: pushes in flight at the fake APNs, on all connections."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--devices", type=int, default=2000, help="devices of the fan-out")
    parser.add_argument("--big", type=int, default=10_000, help="IDs of the one big call")
    parser.add_argument("--batch", type=int, default=100, help="IDs per /v1/push call")
    parser.add_argument("--calls", type=int, default=8, help="/v1/push calls in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="per fan-out phase")
    parser.add_argument(
        "--delays", default="0,20", help="fake-APNs answer delays in ms, comma-separated"
    )
    parser.add_argument("--streams", type=int, default=1000, help="the fake's stream limit")
    parser.add_argument("--storage", default="inmem", help="inmem, sqlite, mysql or pgsql")
    args, rest = parser.parse_known_args(argv)
    args.delays = [float(d) for d in args.delays.split(",") if d]
    args.bench = _parser().parse_args(rest + ["--storage", args.storage])
    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor, args)))


if __name__ == "__main__":
    main()
