"""
MariaDB for tests: throwaway databases on the machine's server, and private
servers for the tests that stop one.

Every test that touches MariaDB goes through here, so a test run leaves no
database behind.  The shared server is the one scripts/ensure-databases
starts (root over 127.0.0.1:3306 without a password); NANOMDM_TEST_MYSQL
overrides host and credentials as a DSN without database, e.g.
``root:secret@tcp(db:3306)/``.  It is never stopped: a test that must stop
or kill a server starts a ``PrivateServer`` (own data directory and port).
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pymysql

from nanomdm_tw.storage.dsn import parse_dsn
from nanomdm_tw.tools.schema import upgrade

SERVER_DSN = os.environ.get("NANOMDM_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/")
MARIADBD = "/usr/sbin/mariadbd"


def _connect(server_dsn: str = SERVER_DSN, **overrides) -> pymysql.connections.Connection:
    kwargs = parse_dsn(server_dsn).connect_kwargs()
    kwargs.update(autocommit=True, connect_timeout=2, **overrides)
    return pymysql.connect(**kwargs)


def is_up(server_dsn: str = SERVER_DSN) -> bool:
    try:
        _connect(server_dsn).close()
    except pymysql.MySQLError:
        return False
    return True


def wait_until_up(server_dsn: str = SERVER_DSN, seconds: float = 60.0) -> None:
    """Block until the server answers (a test helper; never on a serving reactor)."""
    deadline = time.monotonic() + seconds
    while not is_up(server_dsn):
        if time.monotonic() > deadline:
            raise RuntimeError(f"MariaDB at {server_dsn} did not answer within {seconds} s")
        time.sleep(0.2)


def ensure_server() -> None:
    """
    Wait briefly for the shared server; tests never start or install one
    (``make test`` runs scripts/ensure-databases before pytest).
    """
    try:
        wait_until_up(seconds=10)
    except RuntimeError as e:
        raise RuntimeError(f"{e}: start it with scripts/ensure-databases") from None


class PrivateServer:
    """A MariaDB of one test's own: its data directory and port, removed by ``remove()``."""

    def __init__(self, folder: Path):
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.dsn = f"root@tcp(127.0.0.1:{self.port})/"
        self._process: subprocess.Popen | None = None
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={folder / 'data'}",
             "--user=root", "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        """Start (or start again) and wait until it answers."""
        self._process = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.folder / 'data'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
             f"--socket={self.folder / 'mysqld.sock'}", f"--pid-file={self.folder / 'pid'}",
             f"--log-error={self.folder / 'error.log'}", "--skip-grant-tables",
             "--skip-name-resolve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until_up(self.dsn)

    def stop(self) -> None:
        """Stop it and wait until it no longer answers."""
        if self._process is not None:
            self._process.terminate()
            self._process.send_signal(signal.SIGCONT)  # in case it was paused
            self._process.wait(timeout=60)
            self._process = None

    def kill(self) -> None:
        """SIGKILL it, as a crash would: no shutdown, recovery from its logs on start."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=60)
            self._process = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open and nothing answers, a black hole."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._process.send_signal(signal.SIGCONT)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class ThrowawayDatabase:
    """``nanomdm_test_<random>`` on the server, dropped by ``drop()``."""

    def __init__(self, with_schema: bool = True, server_dsn: str = SERVER_DSN):
        """``server_dsn``: a PrivateServer's, else the machine's shared server."""
        if server_dsn == SERVER_DSN:
            ensure_server()
        self.server_dsn = server_dsn
        self.name = "nanomdm_test_" + secrets.token_hex(6)
        connection = _connect(server_dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")
        finally:
            connection.close()
        if with_schema:
            upgrade(self.dsn)

    @property
    def dsn(self) -> str:
        return self.server_dsn.rstrip("/") + "/" + self.name

    def connect(self) -> pymysql.connections.Connection:
        return _connect(self.server_dsn, database=self.name)

    def query(self, sql: str, *args) -> list[tuple]:
        """Run one statement in its own connection; its rows."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args or None)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def drop(self) -> None:
        connection = _connect(self.server_dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {self.name}")
        finally:
            connection.close()
