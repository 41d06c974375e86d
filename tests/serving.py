"""
A real nanomdm-tw server on a loopback port, started in the test's reactor.

``serve()`` runs the same NanoMDMService that ``twistd nanomdm`` runs, with
--dev so a development CA and API key exist, and in-memory storage unless
the test asks for another.
"""

import socket
import subprocess
import time
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import reactor
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.server import NanoMDMService
from nanomdm_tw.settings import Settings, StorageSpec
from nanomdm_tw.storage.interfaces import IStorage


def free_port() -> int:
    """A loopback port nothing listens on right now, for a server in a subprocess."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(port: int, process: subprocess.Popen, seconds: float = 30):
    """(status, body) of ``/version`` once the server in ``process`` answers on ``port``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/version") as answer:
                return answer.status, answer.read()
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"server did not answer:\n{output}")
            time.sleep(0.2)


@dataclass
class RunningServer:
    url: str
    api_key: str
    ca: DevelopmentCA
    storage: IStorage
    service: NanoMDMService
    http: HTTPClient

    def api_auth(self) -> tuple[str, str]:
        return ("nanomdm", self.api_key)


@asynccontextmanager
async def serve(tmp_path: Path, storage: StorageSpec | None = None, **settings):
    """Start a server with ``settings`` (Settings fields) and stop it afterwards."""
    settings.setdefault("api_key", "test-api-key")
    settings.setdefault("dev", True)
    service = NanoMDMService(
        Settings(
            listen="tcp:0:interface=127.0.0.1",
            data_dir_override=str(tmp_path / "data"),
            storage=storage or StorageSpec("inmem", "", ""),
            **settings,
        ),
        reactor,
    )
    service.startService()
    await service.ready
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    try:
        yield RunningServer(
            url=f"http://127.0.0.1:{service.port.getHost().port}",
            api_key=service.api_key,
            ca=service.development_ca,
            storage=service.storage,
            service=service,
            http=http,
        )
    finally:
        await pool.closeCachedConnections()
        await service.stopService()
