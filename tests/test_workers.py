"""--workers: extra processes serve on the same socket, are restarted, and stop with the first."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from nanomdm_tw.workers import usable_cpus
from .mysqlserver import ThrowawayDatabase
from .serving import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition, what: str, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def version(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def worker_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"started worker \d+ \(pid (\d+)\)", log.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def start_server(tmp_path: Path, port: int, log: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", f"--logfile={log}",
         "nanomdm", "--dev", "--listen", f"127.0.0.1:{port}", *flags],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip


def listening_socket(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:port, as /proc/PID/fd names it."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            return f"socket:[{fields[9]}]"
    raise AssertionError(f"nothing listens on port {port}")


def open_sockets(pid: int) -> set[str]:
    folder = Path(f"/proc/{pid}/fd")
    return {os.readlink(fd) for fd in folder.iterdir()}


def test_default_on_a_database_server_is_one_process_per_cpu(tmp_path: Path) -> None:
    database = ThrowawayDatabase()
    port = free_port()
    log = tmp_path / "server.log"
    server = start_server(tmp_path, port, log, "--storage", "mysql", "--storage-dsn", database.dsn)
    try:
        wait_for(lambda: version(port), "the server")
        workers = usable_cpus() - 1
        wait_for(
            lambda: log.read_text().count("nanomdm-tw listening on") == 1 + workers,
            "every worker to serve",
        )
        pids = [server.pid, *worker_pids(log)]
        assert len(pids) == usable_cpus()
        socket_name = listening_socket(port)
        assert [socket_name in open_sockets(pid) for pid in pids] == [True] * len(pids)
    finally:
        server.terminate()
        server.wait(timeout=30)
        database.drop()
    assert "Traceback" not in log.read_text()


def test_workers_serve_restart_and_stop(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    server = start_server(
        tmp_path, port, log, "--workers", "2", "--storage-dsn", str(tmp_path / "db")
    )
    try:
        wait_for(lambda: version(port) and worker_pids(log), "the server and its worker")
        (first_worker,) = worker_pids(log)
        wait_for(lambda: "worker 1: " in log.read_text(), "the worker to start serving")
        # With the first process frozen, only the worker can answer, enrollment included.
        server.send_signal(signal.SIGSTOP)
        try:
            assert wait_for(lambda: version(port), "the worker to answer")
            enrolled = subprocess.run(
                [sys.executable, "-m", "nanomdm_tw.tools.sim", "--url", f"http://127.0.0.1:{port}",
                 "--ca-dir", str(tmp_path / "db" / "devca"), "--state", str(tmp_path / "sim"),
                 "enroll"],
                env=environ, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert enrolled.returncode == 0, enrolled.stderr
        finally:
            server.send_signal(signal.SIGCONT)
        # A worker that dies is replaced.
        os.kill(first_worker, signal.SIGKILL)
        replacement = wait_for(
            lambda: [p for p in worker_pids(log) if p != first_worker], "a replacement worker"
        )[0]
        assert alive(replacement)
        # SIGTERM to the first process stops everything.
        server.send_signal(signal.SIGTERM)
        # twistd re-raises the signal that stopped it, as its exit status.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        wait_for(lambda: not alive(replacement), "the worker to stop")
        assert not version(port)
    finally:
        if server.poll() is None:
            server.kill()
    text = log.read_text()
    assert "Traceback" not in text, text
