"""
The machine's PostgreSQL for tests: throwaway databases, and cutting their connections.

Every test that touches PostgreSQL goes through here, so a test run leaves
no database behind.  The server is shared with other work and is never
stopped: a "server restart" is pg_terminate_backend on the connections to
our own throwaway database, which the client sees the same way.  The
server is the one scripts/ensure-databases starts (postgres over
127.0.0.1:5432, trust auth); NANOMDM_TEST_PGSQL overrides it as a
key=value DSN without dbname.
"""

import os
import secrets
import subprocess
import time
from pathlib import Path

import psycopg

from nanomdm_tw.tools.schema import upgrade

SERVER_DSN = os.environ.get(
    "NANOMDM_TEST_PGSQL", "host=127.0.0.1 port=5432 user=postgres sslmode=disable"
)
ENSURE = Path(__file__).parent.parent / "scripts" / "ensure-databases"


def _connect(dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(f"{SERVER_DSN} dbname={dbname}", autocommit=True, connect_timeout=2)


def is_up() -> bool:
    try:
        _connect().close()
    except psycopg.OperationalError:
        return False
    return True


def ensure_server() -> None:
    """Start PostgreSQL (via scripts/ensure-databases) unless it answers already."""
    if is_up():
        return
    subprocess.run([str(ENSURE)], check=True)
    deadline = time.monotonic() + 60
    while not is_up():
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL at {SERVER_DSN} did not answer within 60 s")
        time.sleep(0.2)


class ThrowawayDatabase:
    """``nanomdm_test_<random>`` on the server, dropped by ``drop()``."""

    def __init__(self, with_schema: bool = True):
        ensure_server()
        self.name = "nanomdm_test_" + secrets.token_hex(6)
        with _connect() as connection:
            connection.execute(f"CREATE DATABASE {self.name} ENCODING 'UTF8' TEMPLATE template0")
        if with_schema:
            upgrade(self.dsn, dialect="pgsql")

    @property
    def dsn(self) -> str:
        """The database as a lib/pq URL, the form NanoMDM's -storage-dsn documents."""
        params = dict(pair.split("=", 1) for pair in SERVER_DSN.split())
        credentials = params.get("user", "postgres")
        if "password" in params:
            credentials += ":" + params["password"]
        return (
            f"postgres://{credentials}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{self.name}?sslmode={params.get('sslmode', 'disable')}"
        )

    def connect(self) -> psycopg.Connection:
        return _connect(self.name)

    def query(self, sql: str, *args) -> list[tuple]:
        """Run one statement in its own connection; its rows (none for statements without)."""
        with self.connect() as connection:
            cursor = connection.execute(sql, args or None)
            return list(cursor.fetchall()) if cursor.description else []

    def terminate_connections(self) -> int:
        """End every other session on this database, as a server restart would; how many."""
        with _connect() as connection:
            # The timeout makes each call wait until its backend has exited.
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = %s AND pid != pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return len(rows)

    def drop(self) -> None:
        with _connect() as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
