"""Start-up against a database that is not there yet, or never will be."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.protocols.portforward import ProxyFactory

from nanomdm_tw.server import NanoMDMService
from nanomdm_tw.settings import Settings, StorageSpec

from .pgsqlserver import ThrowawayDatabase

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forwarder:
    """A TCP port that refuses connections until ``open_to`` makes it forward them."""

    def __init__(self):
        self.port = closed_port()
        self.listening = None

    async def open_to(self, host: str, port: int) -> None:
        endpoint = TCP4ServerEndpoint(reactor, self.port, interface="127.0.0.1")
        self.listening = await endpoint.listen(ProxyFactory(host, port))

    async def close(self) -> None:
        if self.listening is not None:
            await self.listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_waits_for_an_unreachable_database(tmp_path: Path) -> None:
    database = ThrowawayDatabase()
    forwarder = Forwarder()
    dsn = f"postgres://postgres@127.0.0.1:{forwarder.port}/{database.name}?sslmode=disable"
    service = NanoMDMService(
        Settings(
            listen="tcp:0:interface=127.0.0.1",
            dev=True,
            data_dir_override=str(tmp_path / "data"),
            storage=StorageSpec("pgsql", dsn, ""),
        ),
        reactor,
    )
    try:
        service.startService()
        await task.deferLater(reactor, 1.5)
        assert not service.ready.called  # still trying, not given up
        await forwarder.open_to("127.0.0.1", 5432)
        await service.ready  # the next attempt gets through
        assert service.port is not None
    finally:
        await service.stopService()
        await forwarder.close()
        database.drop()


def test_fatal_start_up_error_exits_non_zero(tmp_path: Path) -> None:
    database = ThrowawayDatabase(with_schema=False)  # reachable, but no tables
    try:
        completed = subprocess.run(
            [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "--logfile=-",
             "nanomdm", "--dev", "--listen", f"127.0.0.1:{closed_port()}",
             "--storage", "pgsql", "--storage-dsn", database.dsn],
            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        database.drop()
    assert completed.returncode == 1
    assert "could not start" in completed.stdout
    assert "nanomdm-tw-schema pgsql" in completed.stdout


def test_mysql_dsn_with_unknown_tls_mode_exits_non_zero(tmp_path: Path) -> None:
    """Asked for TLS it cannot give, the server stops; it never talks plain text instead."""
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "--logfile=-",
         "nanomdm", "--dev", "--listen", f"127.0.0.1:{closed_port()}",
         "--storage", "mysql", "--storage-dsn", "root@tcp(127.0.0.1:3306)/x?tls=custom"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 1
    assert "tls='custom' is not supported" in completed.stdout
