"""
The soak: minutes of mixed load against a server it starts, watching whether
the server's memory and open files level off.

A leak shows as growth that goes on: a cache that never forgets, a
connection never closed, a queue that only grows.  The soak starts
``nanomdm-tw`` on SQLite in a scratch folder, with a fake APNs and a webhook
receiver in its own process, enrolls simulated devices and then keeps a few
clients busy with check-ins, command reports (some of them large), API
enqueues (each pushing to the fake APNs) and pushes.  It reads the server's
RSS and open file descriptors twelve times an interval and prints a row per
interval with the lowest and highest RSS; at the end it compares the growth
of the lowest (what the server keeps) in the second half with the first and
stops the server with SIGTERM, which must exit 0.

Exit status: 0 when every request got its 200 and both level off, 2 when
they grow on, 1 when a request failed or the server did not stop cleanly.
"""

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from ..crypto.devca import DevelopmentCA, cert_pem, key_pem
from .fake_apns import FakeAPNs
from .sim import DEFAULT_TOPIC, SimulatedDevice, make_command, make_identity

API_KEY = "soak"
# The server runs this very nanomdm_tw, installed or not.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
# A report this large is one in LARGE_EVERY: InstalledApplicationList-shaped.
LARGE_APPS = 8_000
LARGE_EVERY = 25
# What the clients do, and how often relative to each other.
ACTIONS = {"checkin": 3, "report": 4, "enqueue": 3, "push": 1}


@dataclass
class Tally:
    """Requests sent and what came back; the first few failures kept to print."""

    requests: int = 0
    failures: int = 0
    reports: int = 0
    large_reports: int = 0
    examples: list[str] = field(default_factory=list)

    def answered(self, what: str, code: int) -> None:
        self.requests += 1
        if code != 200:
            self.failed(f"{what}: HTTP {code}")

    def failed(self, why: str) -> None:
        self.failures += 1
        if len(self.examples) < 10:
            self.examples.append(why)


class WebhookReceiver(Resource):
    """Counts the events the server delivers."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received = 0

    def render_POST(self, request) -> bytes:
        self.received += 1
        return b""


# Readings per interval: a row shows their lowest and highest RSS.
READINGS_PER_INTERVAL = 12


@dataclass(frozen=True)
class Reading:
    rss_kib: int
    fds: int


def read_process(pid: int) -> Reading:
    """The server's resident memory and open file descriptors, from /proc."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return Reading(rss, len(os.listdir(f"/proc/{pid}/fd")))


@dataclass(frozen=True)
class Sample:
    """
    One interval's readings.  ``floor_kib`` is what the server keeps: a large
    report being decoded when one reading is taken lifts that reading by its
    size for a moment, so single readings judge the timing, not a leak.
    """

    seconds: float
    floor_kib: int
    peak_kib: int
    fds: int


def summarise(readings: list[Reading], seconds: float) -> Sample:
    rss = [r.rss_kib for r in readings]
    return Sample(seconds, min(rss), max(rss), max(r.fds for r in readings))


def levels_off(values: list[int], tolerance: int) -> bool:
    """The second half grew by at most half the first half's growth, or by ``tolerance``."""
    middle = len(values) // 2
    first = values[middle] - values[0]
    last = values[-1] - values[middle]
    return last <= max(first / 2, tolerance)


def large_app_list(count: int) -> list[dict]:
    return [
        {"Identifier": f"com.example.soak.app{n}", "Name": f"Soak App {n}",
         "ShortVersion": "1.0", "Version": "100", "BundleSize": 10_000_000 + n,
         "DynamicSize": 1_000 + n, "Installing": False}  # fmt: skip
        for n in range(count)
    ]


class Soak:
    def __init__(self, reactor, args: argparse.Namespace, out=sys.stdout) -> None:
        self.reactor = reactor
        self.args = args
        self.out = out
        self.tally = Tally()
        self.webhook = WebhookReceiver()
        self.folder = Path(tempfile.mkdtemp(prefix="nanomdm-soak-"))
        self.large_apps = large_app_list(LARGE_APPS)
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = args.clients * 2
        self.pool = pool
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.server: subprocess.Popen | None = None
        self.url = ""
        self.pushes = 0  # enqueues (which push) and pushes sent

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def run(self) -> int:
        status = 1
        ca = DevelopmentCA.create()
        ca.save(self.folder / "db" / "devca")
        (self.folder / "ca.pem").write_bytes(ca.cert_pem)
        apns = FakeAPNs(self.reactor, ca, record=False)
        await apns.start()
        receiver = await serverFromString(self.reactor, "tcp:0:interface=127.0.0.1").listen(
            Site(self.webhook)
        )
        try:
            self._start_server(apns.base_url, receiver.getHost().port)
            await self._wait_until_serving()
            devices = await self._prepare(ca)
            samples = await self._load(devices)
            status = await self._finish(samples, apns)
        finally:
            if self.server is not None and self.server.poll() is None:
                self.server.kill()
                self.server.wait()
            await self.pool.closeCachedConnections()
            await receiver.stopListening()
            await apns.stop()
        if status != 1:
            shutil.rmtree(self.folder)  # kept, with the server's log, when something failed
        return status

    def _start_server(self, apns_url: str, webhook_port: int) -> None:
        port = self.args.port or _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.folder / "server.log", "wb")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "nanomdm_tw.cli", "-dev", "-api", API_KEY,
             "-listen", f"127.0.0.1:{port}", "-storage-dsn", str(self.folder / "db"),
             "-apns-url", apns_url, "-apns-ca", str(self.folder / "ca.pem"),
             "-webhook-url", f"http://127.0.0.1:{webhook_port}/webhook"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
            env=dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT)),
        )  # fmt: skip
        log.close()
        self.say(f"soak: server pid {self.server.pid} on {self.url}, log {self.folder}/server.log")

    async def _wait_until_serving(self) -> None:
        for _ in range(300):
            if self.server.poll() is not None:
                raise SystemExit(f"soak: the server exited ({self.server.returncode})")
            try:
                response = await self.http.get(self.url + "/version")
                await response.content()
                return
            except Exception:
                await task.deferLater(self.reactor, 0.2)
        raise SystemExit("soak: the server did not answer")

    async def _prepare(self, ca: DevelopmentCA) -> list[SimulatedDevice]:
        cert, key = ca.issue_push_certificate(DEFAULT_TOPIC)
        response = await self.http.put(
            self.url + "/v1/pushcert", data=cert_pem(cert) + key_pem(key),
            auth=("nanomdm", API_KEY),
        )  # fmt: skip
        await response.content()
        self.tally.answered("push certificate", response.code)
        devices = [
            SimulatedDevice.create(self.url, make_identity(ca), http=self.http)
            for _ in range(self.args.devices)
        ]
        for device in devices:
            self.tally.answered("Authenticate", (await device.authenticate()).code)
            self.tally.answered("TokenUpdate", (await device.token_update()).code)
        self.say(f"soak: {len(devices)} devices enrolled")
        return devices

    async def _load(self, devices: list[SimulatedDevice]) -> list[Sample]:
        started = time.monotonic()
        deadline = started + self.args.minutes * 60
        samples = [summarise([read_process(self.server.pid)], 0.0)]
        self.say(f"{'interval':>8} {'elapsed':>8} {'requests':>9} {'failed':>6} "
                 f"{'webhooks':>8} {'pushes':>7} {'rss_floor':>9} {'rss_peak':>8} "
                 f"{'fds':>5}")  # fmt: skip
        self._row(0, samples[0])
        readings: list[Reading] = []

        def take() -> None:
            readings.append(read_process(self.server.pid))
            if len(readings) == READINGS_PER_INTERVAL:
                samples.append(summarise(readings, time.monotonic() - started))
                readings.clear()
                self._row(len(samples) - 1, samples[-1])

        sampler = task.LoopingCall(take)
        sampler.clock = self.reactor
        sampler.start(self.args.interval / READINGS_PER_INTERVAL, now=False)
        clients = [
            Deferred.fromCoroutine(self._client(devices, deadline, n))
            for n in range(self.args.clients)
        ]
        await gatherResults(clients, consumeErrors=True)
        # The last interval's row, when the load ended between two samples.
        wanted = round(self.args.minutes * 60 / self.args.interval)
        while len(samples) - 1 < wanted:
            await task.deferLater(self.reactor, 0.2)
        sampler.stop()
        return samples

    def _row(self, number: int, s: Sample) -> None:
        self.say(
            f"{number:>8} {s.seconds:>7.0f}s {self.tally.requests:>9} {self.tally.failures:>6} "
            f"{self.webhook.received:>8} {self.pushes:>7} {s.floor_kib / 1024:>9.1f} "
            f"{s.peak_kib / 1024:>8.1f} {s.fds:>5}"
        )

    async def _client(self, devices: list[SimulatedDevice], deadline: float, number: int) -> None:
        chooser = random.Random(number)
        names, weights = list(ACTIONS), list(ACTIONS.values())
        while time.monotonic() < deadline:
            device = chooser.choice(devices)
            action = chooser.choices(names, weights)[0]
            try:
                await getattr(self, "_" + action)(device)
            except Exception as e:  # a connection refused or reset: the server failed
                self.tally.failed(f"{action}: {e!r}")

    async def _checkin(self, device: SimulatedDevice) -> None:
        self.tally.answered("TokenUpdate", (await device.token_update()).code)

    async def _report(self, device: SimulatedDevice) -> None:
        """Idle, then answer every queued command; one answer in LARGE_EVERY is large."""
        response = await device.idle()
        self.tally.answered("Idle", response.code)
        command = response.plist
        while command is not None and response.code == 200:
            self.tally.reports += 1
            fields = {}
            if self.tally.reports % LARGE_EVERY == 0:
                self.tally.large_reports += 1
                fields["InstalledApplicationList"] = self.large_apps
            response = await device.report("Acknowledged", command["CommandUUID"], **fields)
            self.tally.answered("Acknowledged", response.code)
            command = response.plist

    async def _enqueue(self, device: SimulatedDevice) -> None:
        command = make_command("DeviceInformation", Queries=["DeviceName", "OSVersion"])
        response = await self.http.put(
            f"{self.url}/v1/enqueue/{device.id}", data=command, auth=("nanomdm", API_KEY)
        )
        await response.content()
        self.pushes += 1
        self.tally.answered("enqueue", response.code)

    async def _push(self, device: SimulatedDevice) -> None:
        response = await self.http.get(f"{self.url}/v1/push/{device.id}", auth=("nanomdm", API_KEY))
        await response.content()
        self.pushes += 1
        self.tally.answered("push", response.code)

    async def _finish(self, samples: list[Sample], apns: FakeAPNs) -> int:
        tally = self.tally
        self.say(
            f"soak: {tally.requests} requests, {tally.failures} failed; {tally.reports} reports"
            f" ({tally.large_reports} with {LARGE_APPS} apps); {apns.received} pushes reached"
            f" the fake APNs; {self.webhook.received} webhook events received"
        )
        for example in tally.examples:
            self.say(f"soak: failed: {example}")
        # The first sample is before any load: growth is judged from the first interval on.
        judged = samples[1:] if len(samples) > 2 else samples
        floors = [s.floor_kib for s in judged]
        rss = levels_off(floors, tolerance=max(floors[-1] // 50, 1024))
        fds = levels_off([s.fds for s in judged], tolerance=2)
        self.say(
            "soak: verdict: RSS floor {} ({:.1f} -> {:.1f} MiB, peak {:.1f}),"
            " open files {} ({} -> {})".format(
                "levels off" if rss else "GROWS ON", floors[0] / 1024, floors[-1] / 1024,
                max(s.peak_kib for s in judged) / 1024, "level off" if fds else "GROW ON",
                judged[0].fds, judged[-1].fds,
            )
        )  # fmt: skip
        self.server.send_signal(signal.SIGTERM)
        code = await self._wait_for_exit()
        self.say(f"soak: server stopped on SIGTERM with exit status {code}")
        if tally.failures or code != 0:
            return 1
        return 0 if rss and fds else 2

    async def _wait_for_exit(self) -> int | None:
        for _ in range(300):
            if self.server.poll() is not None:
                return self.server.returncode
            await task.deferLater(self.reactor, 0.1)
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load lasts [10]")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between rows [60]")
    parser.add_argument("--devices", type=int, default=40, help="simulated devices [40]")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients [4]")
    parser.add_argument("--port", type=int, default=0, help="the server's port [any free]")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)

    async def run(reactor) -> None:
        status = await Soak(reactor, args).run()
        if status:
            raise SystemExit(status)

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
