"""
``--workers N``: more server processes on the same listening socket.

One Python process serves from one core.  With ``--workers N`` the first
process opens the listening socket as usual and then starts N-1 worker
processes that adopt that very socket; the kernel spreads incoming
connections over all of them.  They share nothing but the socket and the
storage (so not ``inmem``): every cache they keep is rebuilt from storage,
as with several servers behind a load balancer.

``auto`` is one process per CPU this process may use, the default on the
database servers' backends.  SQLite stays at one: its single write lock
makes a second process wait rather than help (writes' p99 doubled).

Workers are restarted when they die, stopped when the first process stops
(SIGTERM, which each answers as the first process does: its requests under
way finish within the shut-down grace), and stop by themselves when it
vanishes (their stdin pipe closes).
"""

import json
import os
import socket
import sys
from dataclasses import asdict, replace

from twisted.application.service import Service
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

# The worker finds its settings in this environment variable, its socket on fd 3.
SETTINGS_VARIABLE = "NANOMDM_WORKER_SETTINGS"
AUTO = "auto"
# Backends that `auto` gives one process per CPU by default: a database server's.
AUTO_BACKENDS = frozenset({"mysql", "pgsql"})
SOCKET_FD = 3
RESTART_DELAY = 1.0
# Beyond their own shut-down (twice the grace at most), workers get this long to exit.
STOP_MARGIN = 5.0


def worker_stop_timeout(grace: float) -> float:
    """How long a worker may take after SIGTERM before it is killed."""
    return 2 * grace + STOP_MARGIN


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(storage_names: list[str]) -> str:
    """``auto`` when every backend is on a database server, else 1 (the most cautious wins)."""
    return AUTO if all(name in AUTO_BACKENDS for name in storage_names) else "1"


def encode_settings(settings) -> str:
    return json.dumps(asdict(settings))


def decode_settings(text: str):
    from .settings import Settings, StorageSpec

    values = json.loads(text)
    values["storage"] = StorageSpec(**values["storage"])
    values["extra_storages"] = tuple(StorageSpec(**s) for s in values["extra_storages"])
    return Settings(**values)


class _Worker(protocol.ProcessProtocol):
    """One worker process: its output relayed to our log, its exit reported."""

    _log = Logger()

    def __init__(self, pool: "WorkerPool", number: int):
        self.pool = pool
        self.number = number
        self.ended: defer.Deferred = defer.Deferred()
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._log.info(
                "worker {number}: {line}",
                number=self.number,
                line=line.decode("utf-8", "replace"),
            )

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.ended.callback(None)
        self.pool.worker_ended(self, reason)


class WorkerPool(Service):
    _log = Logger()

    def __init__(self, settings, port: IListeningPort, count: int, reactor):
        self._settings = settings
        self._port = port
        self._count = count
        self._reactor = reactor
        self._workers: dict[int, tuple[_Worker, object]] = {}
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self._log.info("serving from {count} processes", count=self._count)
        for number in range(1, self._count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        worker = _Worker(self, number)
        environment = dict(os.environ, **{SETTINGS_VARIABLE: encode_settings(self._settings)})
        argv = [sys.executable, "-m", "nanomdm_tw.workers"]
        transport = self._reactor.spawnProcess(
            worker,
            sys.executable,
            argv,
            env=environment,
            childFDs={0: "w", 1: "r", 2: "r", SOCKET_FD: self._port.fileno()},
        )
        self._workers[number] = (worker, transport)
        self._log.info("started worker {number} (pid {pid})", number=number, pid=transport.pid)

    def worker_ended(self, worker: _Worker, reason) -> None:
        self._workers.pop(worker.number, None)
        if self._stopping:
            return
        self._log.warn(
            "worker {number} ended ({reason}); restarting it",
            number=worker.number,
            reason=reason.getErrorMessage(),
        )
        self._reactor.callLater(RESTART_DELAY, self._restart, worker.number)

    def _restart(self, number: int) -> None:
        if not self._stopping and number not in self._workers:
            self._spawn(number)

    def pids(self) -> list[int]:
        return [transport.pid for _, transport in self._workers.values()]

    def terminate(self) -> None:
        """SIGTERM every worker (they stop as the first process does); none is restarted."""
        self._stopping = True
        for _, transport in self._workers.values():
            transport.signalProcess("TERM")

    async def wait(self, timeout: float) -> None:
        """Wait for the workers to exit; SIGKILL those still there after ``timeout``."""
        running = list(self._workers.values())
        timer = self._reactor.callLater(timeout, self._kill, running)
        await defer.DeferredList([worker.ended for worker, _ in running])
        if timer.active():
            timer.cancel()

    def _kill(self, running) -> None:
        for worker, transport in running:
            if not worker.ended.called:
                transport.signalProcess("KILL")


def adopt_listening_socket(reactor, factory, fd: int = SOCKET_FD) -> IListeningPort:
    """Serve ``factory`` on the listening socket inherited from the first process."""
    probe = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)  # a dup, to read the family
    family = probe.family
    probe.close()
    return reactor.adoptStreamPort(fd, family, factory)


class _ParentWatch(protocol.Protocol):
    """The worker's stdin: when the first process is gone, the pipe closes."""

    def __init__(self, reactor):
        self._reactor = reactor

    def connectionLost(self, reason=None) -> None:
        if self._reactor.running:
            self._reactor.stop()


def main() -> None:
    """A worker process: the same server, on the inherited socket."""
    from twisted.internet import reactor, stdio
    from twisted.logger import FileLogObserver, eventAsText, globalLogBeginner

    from .server import NanoMDMService

    # The first process logs our lines with its own timestamps.
    untimed = FileLogObserver(
        sys.stdout, lambda event: eventAsText(event, includeTimestamp=False) + "\n"
    )
    globalLogBeginner.beginLoggingTo([untimed])
    settings = decode_settings(os.environ.pop(SETTINGS_VARIABLE))
    service = NanoMDMService(replace(settings, workers=1), reactor, inherited_fd=SOCKET_FD)
    stdio.StandardIO(_ParentWatch(reactor))
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
