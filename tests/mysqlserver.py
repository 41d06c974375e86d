"""
The machine's MariaDB for tests: throwaway databases, and stopping and
starting the server for the fault test.

Every test that touches MariaDB goes through here, so a test run leaves no
database behind and a stopped server is always started again.  The server
is the one scripts/ensure-databases starts (root over 127.0.0.1:3306 without
a password); NANOMDM_TEST_MYSQL overrides host and credentials as a DSN
without database, e.g. ``root:secret@tcp(db:3306)/``.
"""

import os
import secrets
import subprocess
import time
from pathlib import Path

import pymysql

from nanomdm_tw.storage.dsn import parse_dsn
from nanomdm_tw.tools.schema import upgrade

SERVER_DSN = os.environ.get("NANOMDM_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/")
MARIADBD = "/usr/sbin/mariadbd"
ENSURE = Path(__file__).parent.parent / "scripts" / "ensure-databases"


def _connect(**overrides) -> pymysql.connections.Connection:
    kwargs = parse_dsn(SERVER_DSN).connect_kwargs()
    kwargs.update(autocommit=True, connect_timeout=2, **overrides)
    return pymysql.connect(**kwargs)


def is_up() -> bool:
    try:
        _connect().close()
    except pymysql.MySQLError:
        return False
    return True


def wait_until_up(seconds: float = 60.0) -> None:
    """Block until the server answers (a test helper; never on a serving reactor)."""
    deadline = time.monotonic() + seconds
    while not is_up():
        if time.monotonic() > deadline:
            raise RuntimeError(f"MariaDB at {SERVER_DSN} did not answer within {seconds} s")
        time.sleep(0.2)


def ensure_server() -> None:
    """Start MariaDB (via scripts/ensure-databases) unless it answers already."""
    if not is_up():
        subprocess.run([str(ENSURE)], check=True)
        wait_until_up()


def stop_server() -> None:
    """Stop MariaDB and wait until it no longer answers."""
    subprocess.run(
        ["start-stop-daemon", "--stop", "--quiet", "--retry", "30", "--exec", MARIADBD],
        check=False,
    )
    deadline = time.monotonic() + 30
    while is_up():
        if time.monotonic() > deadline:
            raise RuntimeError("MariaDB did not stop")
        time.sleep(0.2)


def start_server() -> None:
    """Start MariaDB again after stop_server and wait until it answers."""
    subprocess.run(
        ["start-stop-daemon", "--start", "--oknodo", "--quiet", "--background",
         "--chuid", "mysql", "--exec", MARIADBD],
        check=False,
    )
    wait_until_up()


class ThrowawayDatabase:
    """``nanomdm_test_<random>`` on the server, dropped by ``drop()``."""

    def __init__(self, with_schema: bool = True):
        ensure_server()
        self.name = "nanomdm_test_" + secrets.token_hex(6)
        connection = _connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")
        finally:
            connection.close()
        if with_schema:
            upgrade(self.dsn)

    @property
    def dsn(self) -> str:
        return SERVER_DSN.rstrip("/") + "/" + self.name

    def connect(self) -> pymysql.connections.Connection:
        return _connect(database=self.name)

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
        connection = _connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {self.name}")
        finally:
            connection.close()
