"""
PostgreSQL for tests: throwaway databases on the machine's server, cutting
their connections, and private servers for the tests that kill one.

Every test that touches PostgreSQL goes through here, so a test run leaves
no database behind.  The shared server is shared with other work and is
never stopped: a test that must stop or kill a server starts a
``PrivateServer`` (own data directory, port and socket directory).  The
shared server is the one scripts/ensure-databases starts (postgres over
127.0.0.1:5432, trust auth); NANOMDM_TEST_PGSQL overrides it as a
key=value DSN without dbname.
"""

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from nanomdm_tw.tools.schema import upgrade

SERVER_DSN = os.environ.get(
    "NANOMDM_TEST_PGSQL", "host=127.0.0.1 port=5432 user=postgres sslmode=disable"
)


def _connect(dbname: str = "postgres", server_dsn: str = SERVER_DSN) -> psycopg.Connection:
    return psycopg.connect(f"{server_dsn} dbname={dbname}", autocommit=True, connect_timeout=2)


def is_up(server_dsn: str = SERVER_DSN) -> bool:
    try:
        _connect(server_dsn=server_dsn).close()
    except psycopg.OperationalError:
        return False
    return True


def wait_until_up(server_dsn: str = SERVER_DSN, seconds: float = 60.0) -> None:
    """Block until the server answers (a test helper; never on a serving reactor)."""
    deadline = time.monotonic() + seconds
    while not is_up(server_dsn):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL at {server_dsn} did not answer within {seconds} s")
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


def _server_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivateServer:
    """
    A PostgreSQL of one test's own: its data directory, port and socket
    directory, removed by ``remove()``.  PostgreSQL refuses to run as root,
    so under root it runs as the ``postgres`` user, in a directory of its own
    outside the (root-only) pytest tmp_path.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="nanomdm-test-pg-"))
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server_dsn = f"host=127.0.0.1 port={self.port} user=postgres sslmode=disable"
        self._process: subprocess.Popen | None = None
        subprocess.run(
            [_server_binary("initdb"), "-D", str(self.folder / "data"), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, user=self._user,
        )  # fmt: skip

    def start(self) -> None:
        """Start (or start again, recovering from its WAL) and wait until it answers."""
        with open(self.folder / "server.log", "ab") as log:
            self._process = subprocess.Popen(
                [_server_binary("postgres"), "-D", str(self.folder / "data"),
                 "-p", str(self.port), "-k", str(self.folder),
                 "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=50"],
                stdout=subprocess.DEVNULL, stderr=log, user=self._user, start_new_session=True,
            )  # fmt: skip
        wait_until_up(self.server_dsn)

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a crash would."""
        if self._process is not None:
            self.pause()  # then no backend starts, or ends, in between
            _signal((self._process.pid, *_children(self._process.pid)), signal.SIGKILL)
            self._process.wait(timeout=60)
            self._process = None
            # The backends are not ours to wait for; wait until the port is free.
            wait_until_down(self.server_dsn)

    def pause(self) -> None:
        """Freeze the postmaster and every backend (SIGSTOP): sockets stay open, nothing answers."""
        _signal([self._process.pid], signal.SIGSTOP)  # first: it starts no backend after this
        _signal(_children(self._process.pid), signal.SIGSTOP)

    def resume(self) -> None:
        _signal((*_children(self._process.pid), self._process.pid), signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self.resume()  # in case it was paused: a frozen server cannot shut down
            self._process.terminate()
            self._process.wait(timeout=60)
            self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """
    The postmaster's processes, one per backend and background worker: each
    calls setsid(), so signalling the postmaster's process group misses them.
    """
    children = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.split("/")[2]))
    return children


def _signal(pids, signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signum)


def wait_until_down(server_dsn: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while is_up(server_dsn) and time.monotonic() < deadline:
        time.sleep(0.1)


class ThrowawayDatabase:
    """``nanomdm_test_<random>`` on the server, dropped by ``drop()``."""

    def __init__(self, with_schema: bool = True, server_dsn: str = SERVER_DSN):
        """``server_dsn``: a PrivateServer's, else the machine's shared server."""
        if server_dsn == SERVER_DSN:
            ensure_server()
        self.server_dsn = server_dsn
        self.name = "nanomdm_test_" + secrets.token_hex(6)
        with _connect(server_dsn=server_dsn) as connection:
            connection.execute(f"CREATE DATABASE {self.name} ENCODING 'UTF8' TEMPLATE template0")
        if with_schema:
            upgrade(self.dsn, dialect="pgsql")

    @property
    def dsn(self) -> str:
        """The database as a lib/pq URL, the form NanoMDM's -storage-dsn documents."""
        params = dict(pair.split("=", 1) for pair in self.server_dsn.split())
        credentials = params.get("user", "postgres")
        if "password" in params:
            credentials += ":" + params["password"]
        return (
            f"postgres://{credentials}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{self.name}?sslmode={params.get('sslmode', 'disable')}"
        )

    def connect(self) -> psycopg.Connection:
        return _connect(self.name, self.server_dsn)

    def query(self, sql: str, *args) -> list[tuple]:
        """Run one statement in its own connection; its rows (none for statements without)."""
        with self.connect() as connection:
            cursor = connection.execute(sql, args or None)
            return list(cursor.fetchall()) if cursor.description else []

    def terminate_connections(self) -> int:
        """End every other session on this database, as a server restart would; how many."""
        with _connect(server_dsn=self.server_dsn) as connection:
            # The timeout makes each call wait until its backend has exited.
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = %s AND pid != pg_backend_pid()",
                (self.name,),
            ).fetchall()
        return len(rows)

    def drop(self) -> None:
        with _connect(server_dsn=self.server_dsn) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
