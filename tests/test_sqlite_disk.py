"""
SQLite on a disk that fills up, and on one that is read-only.

The disk is a small tmpfs mounted for the test (so this needs root), and
unmounted after.  While the database cannot be written, devices get 503
(retry later; never 401, which would unenroll them) and the log says what
to do; once space returns the same server serves again; and the file
passes ``PRAGMA integrity_check`` with every 200-acknowledged row in it.
A read-only disk is met at start-up (Linux will not remount a disk
read-only under open files): the server exits 1 saying what to fix.
"""

import errno
import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.storage.sqlite import database_path
from nanomdm_tw.tools.sim import SimulatedDevice, enqueue, make_command, make_identity

from .serving import free_port, serve

ROOT = Path(__file__).parent.parent


@contextmanager
def small_disk(folder: Path, size: str = "4m"):
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Take every free byte of the disk holding ``folder``; the file that does."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    return filler


def integrity(path: Path) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def rows(path: Path, sql: str) -> set:
    connection = sqlite3.connect(path)
    try:
        return {row[0] for row in connection.execute(sql)}
    finally:
        connection.close()


async def cycle(server, acknowledged: dict[str, list], number: int) -> list[int]:
    """Enroll a device, enqueue a command, acknowledge it; the non-200 codes seen."""
    codes = []
    device = SimulatedDevice.create(server.url, make_identity(server.ca), http=server.http)
    answer = await device.authenticate()
    if answer.code == 200:
        answer = await device.token_update()
    if answer.code != 200:
        return [answer.code]
    acknowledged["enrollments"].append(device.id)
    command_uuid = f"CMD-{number}"
    answer = await enqueue(server.http, server.url, server.api_key, [device.id],
                           make_command("ProfileList", command_uuid))  # fmt: skip
    if answer.code != 200:
        return [answer.code]
    acknowledged["queued"].append(command_uuid)
    for answer in (await device.idle(), await device.report("Acknowledged", command_uuid)):
        if answer.code != 200:
            codes.append(answer.code)
    if not codes:
        acknowledged["results"].append(command_uuid)
    return codes


@pytest_twisted.ensureDeferred
async def test_full_disk_is_a_503_and_nothing_is_lost(tmp_path, log_events):
    with small_disk(tmp_path / "disk") as disk:
        storage = StorageSpec("sqlite", str(disk / "db"), "")
        path = database_path(storage.dsn)
        acknowledged = {"enrollments": [], "queued": [], "results": []}
        async with serve(tmp_path, storage=storage) as server:
            for n in range(5):
                assert await cycle(server, acknowledged, n) == []
            filler = fill(disk)
            failed = []
            for n in range(5, 40):
                failed += await cycle(server, acknowledged, n)
            assert failed, "nothing failed on the full disk"
            assert set(failed) == {503}
            os.unlink(filler)
            for n in range(40, 45):
                assert await cycle(server, acknowledged, n) == []
        assert integrity(path) == [("ok",)]
        assert set(acknowledged["enrollments"]) <= rows(path, "SELECT id FROM enrollments")
        assert set(acknowledged["queued"]) <= rows(path, "SELECT command_uuid FROM commands")
        assert set(acknowledged["results"]) <= rows(
            path, "SELECT command_uuid FROM command_results WHERE status = 'Acknowledged'"
        )
    said = [e for e in log_events if "SQLite cannot write" in e.get("log_format", "")]
    assert said and "is full: free space on it" in said[0]["advice"]
    assert any("writable again" in e.get("log_format", "") for e in log_events)


def start_and_exit(tmp_path: Path, dsn: str) -> subprocess.CompletedProcess:
    """``twistd -n nanomdm`` on the SQLite ``dsn``, expected to exit by itself."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "--logfile=-",
         "nanomdm", "--dev", "--listen", f"tcp:{free_port()}:interface=127.0.0.1",
         "--storage", "sqlite", "--storage-dsn", dsn],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_read_only_disk_is_said_at_start_and_nothing_is_lost(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        storage = StorageSpec("sqlite", str(disk / "db"), "")
        path = database_path(storage.dsn)
        acknowledged = {"enrollments": [], "queued": [], "results": []}
        async with serve(tmp_path, storage=storage) as server:
            for n in range(3):
                assert await cycle(server, acknowledged, n) == []
        # Linux remounts a disk read-only only while no file on it is open for
        # writing, so it goes read-only between two runs of the server.
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        completed = await threads.deferToThread(start_and_exit, tmp_path, storage.dsn)
        assert completed.returncode == 1
        assert f"SQLite cannot write: cannot open {path}" in completed.stdout
        assert "check that its folder exists and is writable" in completed.stdout
        assert "Traceback" not in completed.stdout
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        async with serve(tmp_path, storage=storage) as server:
            for n in range(3, 6):
                assert await cycle(server, acknowledged, n) == []
        assert integrity(path) == [("ok",)]
        assert set(acknowledged["results"]) <= rows(
            path, "SELECT command_uuid FROM command_results WHERE status = 'Acknowledged'"
        )
