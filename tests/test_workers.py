"""--workers: extra processes serve on the same socket, are restarted, and stop with the first."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_workers_serve_restart_and_stop(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    environ = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", f"--logfile={log}",
         "nanomdm", "--dev", "--workers", "2", "--listen", f"127.0.0.1:{port}",
         "--storage-dsn", str(tmp_path / "db")],
        cwd=tmp_path, env=environ,
    )  # fmt: skip
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
