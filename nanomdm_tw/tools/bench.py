"""
``nanomdm-bench``: requests/s and latency of a real server under simulated devices.

The server runs as ``twistd -n nanomdm`` in a subprocess per storage backend,
with a development CA the bench makes.  The bench prepares (signs) every
request up front with ``SimulatedDevice``, then hands the raw bytes to
load-generator subprocesses that replay them over keep-alive HTTP/1.1
connections, so signing and treq are not part of what is measured.  A bare
twisted.web resource answering a fixed body, driven by the same load
generator, gives the framework's ceiling on this machine.
"""

import argparse
import dataclasses
import os
import pickle
import secrets
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.web.client import Agent, HTTPConnectionPool

from ..crypto.devca import DevelopmentCA, generate_key
from ..server import NanoMDMService
from ..settings import Settings, StorageSpec
from ..storage.dsn import parse_dsn
from ..workers import AUTO, default_workers, usable_cpus
from ..storage.sqlite import SQLiteStorage
from . import schema, seed
from .bench_big import big_report_table, idle_beside_big_reports
from .bench_report import Figure, scaling_table, seeded_table, table
from .loadgen import HOST, WorkerResult, Workload, raw_request, worker_main
from .sim import SimulatedDevice, enqueue, make_command, make_identity

# The folder holding the nanomdm_tw package this bench runs from (and twisted/plugins).
_SOURCE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
# Start line for the load generators, so every process starts together.
_START_DELAY = 1.0


# The servers under test, as subprocesses.


class _Child(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred = Deferred()

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


def _cpu_seconds(pid: int | str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_seconds(tid: int) -> float:
    """CPU time of one thread of any process (/proc/<tid>/stat counts its whole process)."""
    try:
        status = Path(f"/proc/{tid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    tgid = status.split("\nTgid:", 1)[1].split()[0]
    return _cpu_seconds(f"{tgid}/task/{tid}")


class _DatabaseCPU:
    """
    CPU time of the database server's threads (processes) serving a database, while sampled.

    MariaDB hands a new connection a cached thread that has run others'
    queries before, so each thread counts from when it is first seen here.
    """

    def __init__(self, threads: Callable[[], list[int]]):
        self._threads = threads
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def sample(self) -> None:
        for tid in self._threads():
            self._last[tid] = _thread_cpu_seconds(tid)
            self._first.setdefault(tid, self._last[tid])

    @property
    def seconds(self) -> float:
        return sum(last - self._first[tid] for tid, last in self._last.items())


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


@dataclass
class _Process:
    pid: int
    child: _Child
    transport: object

    def cpu_seconds(self) -> float:
        """CPU time of the server and of its --workers processes."""
        return sum(_cpu_seconds(pid) for pid in (self.pid, *_children(self.pid)))

    async def stop(self) -> None:
        self.transport.signalProcess("TERM")
        await self.child.ended


def _spawn(reactor, argv: list[str], log_path: Path, cwd: Path) -> _Process:
    """Run ``argv`` with this very nanomdm_tw (and its twistd plugin) importable."""
    child = _Child()
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")])
    )
    log = open(log_path, "ab")
    transport = reactor.spawnProcess(
        child,
        argv[0],
        argv,
        env=env,
        path=str(cwd),
        childFDs={0: "w", 1: log.fileno(), 2: log.fileno()},
    )
    log.close()

    def stop_if_running() -> None:
        # The bench itself interrupted (Ctrl-C, SIGTERM): take its servers along.
        if not child.ended.called:
            transport.signalProcess("TERM")

    reactor.addSystemEventTrigger("before", "shutdown", stop_if_running)
    return _Process(transport.pid, child, transport)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _twistd() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    return str(candidate) if candidate.exists() else "twistd"


async def _wait_for(reactor, http, url: str, process: _Process, log: Path) -> None:
    """Poll ``url`` until it answers, for at most 30 seconds."""
    for _ in range(300):
        if process.child.ended.called:
            break
        try:
            response = await http.get(url)
            await response.content()
            if response.code == 200:
                return
        except Exception:
            pass
        await task.deferLater(reactor, 0.1)
    tail = log.read_text(errors="replace").splitlines()[-15:]
    raise SystemExit(
        "\n".join([f"nanomdm-bench: {url} did not answer; its log ends:", *tail])
    )


_BARE_SERVER = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

class Fixed(Resource):
    isLeaf = True
    def render(self, request):
        request.content.read()
        return b"fixed"

site = Site(Fixed())
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
"""


# Preparing the devices and their requests.


@dataclass
class _Device:
    sim: SimulatedDevice
    authenticate: bytes
    token_update: bytes
    idle: bytes


# Apple devices get RSA-2048 identities from SCEP; keys are shared between
# simulated devices (each still has its own certificate) because generating
# a thousand RSA keys would take longer than the benchmark.
_KEY_POOL = 16


def _prepare_devices(url: str, ca: DevelopmentCA, count: int) -> list[_Device]:
    devices = []
    keys = [generate_key("rsa") for _ in range(min(count, _KEY_POOL))]
    for n in range(count):
        sim = SimulatedDevice.create(url, make_identity(ca, key=keys[n % len(keys)]))
        topic_fields = dict(Topic=sim.topic, SerialNumber=sim.serial_number)
        devices.append(
            _Device(
                sim,
                raw_request(sim.prepare_checkin("Authenticate", **topic_fields)),
                raw_request(sim.prepare_token_update()),
                raw_request(sim.prepare_report("Idle")),
            )
        )
    return devices


# Running one measurement.


class Bench:
    def __init__(self, reactor, args: argparse.Namespace, folder: Path):
        self.reactor = reactor
        self.args = args
        self.folder = folder
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))
        # Database servers' backends -> the database made for this run.
        self.databases: dict[str, str] = {}

    async def measure(
        self,
        server: _Process,
        port: int,
        target: str,
        phase: str,
        sequences: list[list[bytes]],
        untimed_first: bool = False,
    ) -> Figure:
        clients = self.args.clients
        start_at = time.monotonic() + _START_DELAY
        paths = []
        for index in range(clients):
            path = self.folder / f"work-{index}.pickle"
            share = sequences[index::clients]
            concurrency = max(1, min(len(share), self.args.concurrency // clients))
            path.write_bytes(
                pickle.dumps(
                    vars(Workload(port, concurrency, start_at, share, untimed_first))
                )
            )
            paths.append(path)
        # Spawning takes a while; every load generator waits for the common start line.
        workers = [
            _spawn(
                self.reactor,
                [sys.executable, "-m", "nanomdm_tw.tools.bench", "--worker", str(p)],
                self.folder / "workers.log",
                self.folder,
            )
            for p in paths
        ]
        await task.deferLater(self.reactor, max(0.0, start_at - time.monotonic()))
        cpu_at_start = server.cpu_seconds()
        database_cpu = self.database_cpu(target)
        sampling = task.LoopingCall(database_cpu.sample)
        sampling.clock = self.reactor
        sampling.start(0.25)
        await gatherResults([w.child.ended for w in workers])
        server_cpu = server.cpu_seconds() - cpu_at_start
        sampling.stop()
        database_cpu.sample()
        results: list[WorkerResult] = []
        for path in paths:
            result_path = Path(str(path) + ".result")
            if not result_path.exists():
                raise SystemExit(
                    "nanomdm-bench: a load generator failed; see "
                    + str(self.folder / "workers.log")
                )
            results.append(WorkerResult(**pickle.loads(result_path.read_bytes())))
            result_path.unlink()
        latencies = sorted(l for r in results for l in r.latencies)
        seconds = max(r.finished for r in results) - min(r.started for r in results)
        return Figure(
            target,
            phase,
            len(latencies),
            seconds,
            statistics.median(latencies) * 1000,
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            sum(r.errors for r in results),
            server_cpu / seconds,
            sum(r.cpu_seconds for r in results) / seconds,
            database_cpu.seconds / seconds,
        )

    async def start(self, argv: list[str], port: int, name: str) -> _Process:
        log = self.folder / f"{name}.log"
        process = _spawn(self.reactor, argv, log, self.folder)
        await _wait_for(
            self.reactor, self.http, f"http://{HOST}:{port}/version", process, log
        )
        return process

    async def bare(self, devices: list[_Device]) -> Figure:
        port = _free_port()
        server = await self.start(
            [sys.executable, "-c", _BARE_SERVER, str(port)], port, "bare"
        )
        try:
            return await self.measure(
                server,
                port,
                "bare",
                "fixed body",
                [[d.token_update] * self.args.rounds for d in devices],
            )
        finally:
            await server.stop()

    async def nanomdm(
        self, storage: str, ca_path: Path, devices: list[_Device], workers: int
    ) -> list[Figure]:
        port = _free_port()
        api_key = secrets.token_hex(16)
        argv = [
            _twistd(),
            "--pidfile=",
            "--logger=nanomdm_tw.logs.text_observer",
            "-n",
            "nanomdm",
            "--listen",
            f"tcp:{port}:interface={HOST}",
            "--ca",
            str(ca_path),
            "--api",
            api_key,
            "--storage",
            storage,
        ]
        if storage != "inmem":
            argv += ["--storage-dsn", self.dsn(storage), "--workers", str(workers)]
        server = await self.start(argv, port, f"nanomdm-{storage}")
        rounds = self.args.rounds
        try:
            enroll = await self.measure(
                server,
                port,
                storage,
                "Authenticate + TokenUpdate",
                [[d.authenticate, d.token_update] for d in devices],
            )
            if enroll.errors:
                raise SystemExit(f"nanomdm-bench: {enroll.errors} enrollment errors")
            figures = [
                enroll,
                await self.measure(
                    server,
                    port,
                    storage,
                    "TokenUpdate",
                    [[d.token_update] * rounds for d in devices],
                ),
                await self.measure(
                    server,
                    port,
                    storage,
                    "Idle, empty queue",
                    [[d.idle] * rounds for d in devices],
                ),
            ]
            acks = await self._enqueue_commands(port, api_key, devices)
            figures.append(
                await self.measure(
                    server,
                    port,
                    storage,
                    "Ack -> next command",
                    [[d.idle] + a for d, a in zip(devices, acks)],
                    untimed_first=True,
                )
            )
            if self.args.big_reports:
                figures += await idle_beside_big_reports(self, server, port, storage, devices)
            for figure in figures:
                figure.workers = workers
            return figures
        finally:
            await server.stop()

    def dsn(self, storage: str) -> str:
        """The backend's DSN: a folder, or (mysql, pgsql) a database made for this run."""
        if storage not in _SERVERS:
            return str(self.folder / f"db-{storage}")
        admin, database_dsn = _SERVERS[storage]
        server = getattr(self.args, storage)
        if storage not in self.databases:
            self.databases[storage] = "nanomdm_bench_" + secrets.token_hex(4)
            admin(server, f"CREATE DATABASE {self.databases[storage]}")
            schema.upgrade(database_dsn(server, self.databases[storage]), dialect=storage)
        return database_dsn(server, self.databases[storage])

    def forget_databases(self) -> None:
        """Drop what ``dsn`` made, so that the next server starts from empty storage."""
        for storage, database in self.databases.items():
            _SERVERS[storage][0](getattr(self.args, storage), f"DROP DATABASE {database}")
        self.databases.clear()
        for folder in self.folder.glob("db-*"):
            shutil.rmtree(folder)

    def database_cpu(self, storage: str) -> "_DatabaseCPU":
        """A meter of the (local) database server's CPU on the connections to our database."""
        if storage not in self.databases:
            return _DatabaseCPU(list)
        admin, server = _SERVERS[storage][0], getattr(self.args, storage)
        query, database = _CONNECTION_THREADS[storage], self.databases[storage]
        return _DatabaseCPU(lambda: [row[0] for row in admin(server, query, database)])

    async def round_trips(self, storage: str, ca: DevelopmentCA, devices: int = 5) -> dict[str, float]:
        """SQL round trips (statements + commits) per request, counted in the storage layer."""
        service = NanoMDMService(
            Settings(
                listen=f"tcp:0:interface={HOST}",
                ca=str(self.folder / "ca" / "ca.pem"),
                api_key="round-trips",
                storage=StorageSpec(storage, self.dsn(storage), ""),
            ),
            self.reactor,
        )
        service.startService()
        await service.ready
        url = f"http://{HOST}:{service.port.getHost().port}"
        store = service.storage
        counts: dict[str, int] = {}

        async def count(request_type: str, send) -> None:
            before = sum(trips for _, trips in store.round_trips().values())
            response = await send()
            if response.code != 200:
                raise SystemExit(f"nanomdm-bench: {request_type}: HTTP {response.code}")
            spent = sum(trips for _, trips in store.round_trips().values()) - before
            counts[request_type] = counts.get(request_type, 0) + spent

        try:
            for _ in range(devices):
                sim = SimulatedDevice.create(url, make_identity(ca, "ec"), http=self.http)
                uuid = secrets.token_hex(8)
                await count("Authenticate", sim.authenticate)
                await count("TokenUpdate", sim.token_update)
                await count("Idle, empty queue", sim.idle)
                await count("enqueue (API, 1 ID)", lambda: enqueue(
                    self.http, url, "round-trips", [sim.id], make_command("ProfileList", uuid)))
                await count("Idle -> command", sim.idle)
                await count("Ack -> next command", lambda: sim.report("Acknowledged", uuid))
        finally:
            await service.stopService()
        return {request_type: n / devices for request_type, n in counts.items()}

    async def _enqueue_commands(
        self, port: int, api_key: str, devices: list[_Device]
    ) -> list[list[bytes]]:
        """Enqueue K commands for every device; the devices' signed Acks for them."""
        url = f"http://{HOST}:{port}"
        ids = [d.sim.id for d in devices]
        batches = [ids[i : i + 100] for i in range(0, len(ids), 100)]
        uuids = []
        limit = DeferredSemaphore(8)
        for _ in range(self.args.commands):
            command_uuid = secrets.token_hex(16)
            command = make_command("ProfileList", command_uuid)
            uuids.append(command_uuid)
            responses = await gatherResults(
                [
                    limit.run(
                        lambda b=batch: Deferred.fromCoroutine(
                            enqueue(self.http, url, api_key, b, command)
                        )
                    )
                    for batch in batches
                ]
            )
            if any(r.code != 200 for r in responses):
                raise SystemExit(
                    "nanomdm-bench: enqueue failed: " + repr(responses[0].body[:200])
                )
        return [
            [raw_request(d.sim.prepare_report("Acknowledged", u)) for u in uuids]
            for d in devices
        ]


def _mysql_admin(server_dsn: str, statement: str, *args: Any) -> list[tuple]:
    import pymysql

    connection = pymysql.connect(**parse_dsn(server_dsn).connect_kwargs())
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, args or None)
            return list(cursor.fetchall())
    finally:
        connection.close()


def _pgsql_admin(server_dsn: str, statement: str, *args: Any) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"{server_dsn} dbname=postgres", autocommit=True) as connection:
        cursor = connection.execute(statement, args or None)
        return cursor.fetchall() if cursor.description else []


# The OS threads (MariaDB/MySQL) or processes (PostgreSQL) serving a database's connections.
_CONNECTION_THREADS = {
    "mysql": "SELECT TID FROM information_schema.PROCESSLIST WHERE DB = %s",
    "pgsql": "SELECT pid FROM pg_stat_activity WHERE datname = %s",
}

# Backends on a database server: (run a statement on the server, the DSN of one database).
_SERVERS = {
    "mysql": (_mysql_admin, lambda server, name: server.rstrip("/") + "/" + name),
    "pgsql": (_pgsql_admin, lambda server, name: f"{server} dbname={name}"),
}


def _worker_list(option: str) -> list[str]:
    """--workers: comma-separated numbers or ``auto``."""
    words = [w.strip().lower() for w in option.split(",")]
    if not all(w == AUTO or w.isdigit() and int(w) > 0 for w in words):
        raise argparse.ArgumentTypeError(f"not positive numbers or auto: {option!r}")
    return words


def _worker_counts(words: list[str] | None, storage: str) -> list[int]:
    """The server process counts to run ``storage`` with: --workers, else the server's default."""
    if storage == "inmem":
        return [1]
    words = words or [default_workers([storage])]
    counts = [usable_cpus() if w == AUTO else int(w) for w in words]
    return list(dict.fromkeys(counts))


async def _seeded_figures(
    bench: Bench, storage: str, ca_path: Path, devices: list[_Device], workers: int
) -> list[Figure]:
    """The phases again, on a fresh store seeded with --seed-rows queue + result rows."""
    rows = bench.args.seed_rows
    bench.forget_databases()
    dsn = bench.dsn(storage)
    if storage == "sqlite":
        store = SQLiteStorage(dsn)
        await store.open()  # the schema
        await store.close()
    print(f"seeding {storage}: {rows:,} queue + result rows over "
          f"{seed.enrollments_for(rows):,} enrollments...", flush=True)
    started = time.monotonic()
    seed.seed_store(storage, dsn, rows, lambda line: print("  " + line, flush=True))
    print(f"  seeded in {time.monotonic() - started:.0f} s", flush=True)
    figures = await bench.nanomdm(storage, ca_path, devices, workers)
    return [dataclasses.replace(f, target=f"{storage} seeded") for f in figures]


async def _main(reactor, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="nanomdm-bench-") as tmp:
        folder = Path(tmp)
        bench = Bench(reactor, args, folder)
        ca = DevelopmentCA.create(key_type="ec")
        ca.save(folder / "ca")
        print(
            f"preparing {args.devices} devices (RSA-2048, requests signed up front)...",
            flush=True,
        )
        devices = _prepare_devices(f"http://{HOST}", ca, args.devices)
        round_trips = {}
        try:
            figures = [await bench.bare(devices)]
            for storage in filter(None, args.storage.split(",")):
                for workers in _worker_counts(args.workers, storage):
                    print(f"benchmarking storage {storage}, {workers} process(es)...", flush=True)
                    figures += await bench.nanomdm(
                        storage, folder / "ca" / "ca.pem", devices, workers
                    )
                    bench.forget_databases()
                if storage != "inmem":
                    round_trips[storage] = await bench.round_trips(storage, ca)
                if args.seed_rows and storage != "inmem":
                    workers = _worker_counts(args.workers, storage)[0]
                    figures += await _seeded_figures(
                        bench, storage, folder / "ca" / "ca.pem", devices, workers
                    )
        finally:
            await bench.pool.closeCachedConnections()
            bench.forget_databases()
    print()
    print(
        f"{args.devices} devices, {args.concurrency} concurrent connections, "
        f"{args.clients} load generator process(es), {os.cpu_count()} CPUs; "
        f"{args.rounds} requests per device per phase, "
        f"{args.commands} commands per device"
    )
    print(table(figures, figures[0].rate))
    print(
        "CPU: share of one core used during the phase. A server near 100% is bound by\n"
        "its single reactor thread; a client near 100% means the load generator was.\n"
        "CPU ms/req: CPU time of all server processes and threads per request (the\n"
        "database server's own CPU not included)."
    )
    big = big_report_table(figures)
    if big:
        print(f"\nIdle while {args.big_reports} devices send {args.big_report_mb} MB"
              " InstalledApplicationList reports in a loop, against Idle alone:")
        print(big)
    scaling = scaling_table(figures)
    if scaling:
        print("\nScaling with --workers (req/s against the fewest processes):")
        print(scaling)
    if args.seed_rows:
        print(f"\nSeeded ({args.seed_rows:,} queue + result rows) vs empty store; DB ms/req:\n"
              "CPU of the database server's threads (MariaDB) or processes (PostgreSQL)\n"
              "serving the run's database, per request (local servers; 0 for SQLite):")
        print(seeded_table(figures))
    for storage, per_request in round_trips.items():
        print(f"\nSQL round trips per request, {storage} (statements + commits):")
        for request_type, trips in per_request.items():
            print(f"  {request_type:<22} {trips:g}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanomdm-bench", description=__doc__.split("\n\n")[0].strip()
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="connections in flight, all load generators together",
    )
    parser.add_argument(
        "--clients", type=int, default=1, help="load generator processes"
    )
    parser.add_argument(
        "--storage",
        default="inmem,sqlite",
        help="comma-separated backends (inmem, sqlite, mysql, pgsql)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="TokenUpdate and Idle requests per device"
    )
    parser.add_argument(
        "--commands",
        type=int,
        default=5,
        help="commands enqueued per device for the Ack loop",
    )
    parser.add_argument(
        "--mysql",
        default="root@tcp(127.0.0.1:3306)/",
        help="MySQL server DSN without database, for --storage mysql (a database is made per run)",
    )
    parser.add_argument(
        "--pgsql",
        default="host=127.0.0.1 user=postgres sslmode=disable",
        help="PostgreSQL server as key=value pairs without dbname, for --storage pgsql",
    )
    parser.add_argument(
        "--workers",
        type=_worker_list,
        help="comma-separated server process counts to compare, each a number or auto"
        " (nanomdm's --workers; inmem always runs one) [default: the server's default]",
    )
    parser.add_argument(
        "--seed-rows",
        type=int,
        default=0,
        help="also run each SQL backend on a store seeded with this many queue + result "
        "rows over a tenth as many enrollments, and compare",
    )
    parser.add_argument(
        "--big-reports",
        type=int,
        default=3,
        help="devices sending big reports in a loop during the big-report phase (0: skip it)",
    )
    parser.add_argument(
        "--big-report-mb", type=int, default=20, help="size of each big report in MB"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return
    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor, args)))


if __name__ == "__main__":
    main()
