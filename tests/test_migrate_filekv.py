"""
nanomdm-tw-migrate on NanoMDM's folder stores (filekv, and the deprecated file store),
and --storage filekv/file serving the import.
"""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from nanomdm_tw.migrate.filekv import FileKVSource
from nanomdm_tw.migrate.filestore import FileStoreSource
from nanomdm_tw.migrate.records import KINDS
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.storage import make_storage
from nanomdm_tw.storage.imported import NotImported
from nanomdm_tw.tools.migrate import main
from nanomdm_tw.tools.sim import DEFAULT_TOPIC

from .fake_apns import ca, fake  # noqa: F401 (fixtures)
from .migrate_scenario import (
    ANSWERED,
    CLEARED_NOT_NOW,
    FILE_STORE_ORDER,
    NOT_NOW,
    SHARED,
    UNLOCK_TOKEN,
    WAITING,
    WAITING_TOO,
    assert_devices_carry_on,
    build_filekv_store,
)
from .nanomdm_file import write_file_store
from .serving import serve

ROOT = Path(__file__).resolve().parent.parent


def migrate(*argv: str) -> int:
    return main(["--no-progress", *argv])


def rows(database: Path, query: str) -> list[tuple]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def test_filekv_store_copied_whole(tmp_path: Path, ca, capsys) -> None:  # noqa: F811
    dbkv = tmp_path / "dbkv"
    s = build_filekv_store(dbkv, ca)
    argv = ("--from-storage", "filekv", "--from-dsn", str(dbkv),
            "--storage", "filekv", "--storage-dsn", str(dbkv))  # fmt: skip
    assert migrate(*argv) == 0
    assert capsys.readouterr().out == (
        "copied 3 devices, 1 user channels, 4 enrollments, 7 commands, 7 queue entries, "
        "4 command results, 1 push certificates, 2 cert-auth associations\n"
    )
    database = dbkv / "nanomdm.sqlite3"
    device, user, gone = s.device.id, s.user.id, s.gone.id
    assert rows(database, "SELECT id, serial_number, unlock_token, bootstrap_token_b64, "
                "identity_cert IS NOT NULL FROM devices ORDER BY id") == sorted([
        (device, s.device.serial_number, UNLOCK_TOKEN, "Ym9vdHN0cmFwIHRva2VuIGJ5dGVz", 1),
        (gone, s.gone.serial_number, None, None, 1),
        (s.fixture_udid, "F5JM992LF193", s.fixture_token_update["UnlockToken"], None, 0),
    ])  # fmt: skip
    assert rows(database, "SELECT id, device_id, user_id, type, enabled, token_update_tally, "
                "token_hex FROM enrollments ORDER BY id") == sorted([
        (device, device, None, "Device", 1, 1, s.device.push_token.hex()),
        (user, device, user, "User", 1, 1, s.user.push_token.hex()),
        (gone, gone, None, "Device", 0, 1, s.gone.push_token.hex()),
        (s.fixture_udid, s.fixture_udid, None, "Device", 1, 1,
         s.fixture_token_update["Token"].hex()),
    ])  # fmt: skip
    assert rows(database, "SELECT id, device_id FROM users") == [(user, device)]
    queue = ("SELECT q.id, q.command_uuid, q.active, r.status, r.not_now_tally "
             "FROM enrollment_queue q LEFT JOIN command_results r "
             "ON r.id = q.id AND r.command_uuid = q.command_uuid ORDER BY q.id, q.seq")  # fmt: skip
    expected_queue = sorted([
        (gone, CLEARED_NOT_NOW, 0, "NotNow", 1),  # cleared: inactive, its other command lost
        (device, ANSWERED, 1, "Acknowledged", 0),
        (device, NOT_NOW, 1, "NotNow", 1),
        (device, WAITING, 1, None, None),
        (device, WAITING_TOO, 1, None, None),
        (device, SHARED, 1, None, None),
        (user, SHARED, 1, "Acknowledged", 0),
    ], key=lambda row: row[0])  # each enrollment's in the order given
    assert rows(database, queue) == expected_queue
    assert rows(database, "SELECT topic, stale_token FROM push_certs") == [(DEFAULT_TOPIC, 2)]
    assert sorted(rows(database, "SELECT id FROM cert_auth_associations")) == sorted(
        [(device,), (gone,)]
    )

    # Again: the same rows, none twice.
    assert migrate(*argv) == 0
    assert rows(database, queue) == expected_queue
    for table in ("devices", "users", "enrollments", "commands", "command_results",
                  "push_certs", "cert_auth_associations"):  # fmt: skip
        (count,) = rows(database, f"SELECT COUNT(*) FROM {table}")[0]
        assert count == {"devices": 3, "users": 1, "enrollments": 4, "commands": 7,
                         "command_results": 4, "push_certs": 1,
                         "cert_auth_associations": 2}[table]  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_imported_filekv_store_is_served(tmp_path: Path, ca, fake) -> None:  # noqa: F811
    dbkv = tmp_path / "dbkv"
    scenario = build_filekv_store(dbkv, ca)
    assert migrate("--from-storage", "filekv", "--from-dsn", str(dbkv),
                   "--storage", "filekv", "--storage-dsn", str(dbkv)) == 0  # fmt: skip
    ca.save(tmp_path / "data" / "devca")  # the server trusts the devices' CA
    (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
    async with serve(
        tmp_path, StorageSpec("filekv", str(dbkv), ""),
        apns_url=fake.base_url, apns_ca=str(tmp_path / "apns-ca.pem"),
    ) as server:  # fmt: skip
        await assert_devices_carry_on(server, scenario, fake)


def _twistd(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "--logfile=-",
         "nanomdm", "--dev", "--listen", "127.0.0.1:0", *flags],
        cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [
        ("--storage", "filekv"),
        ("--storage", "file"),
        ("--storage", "file", "--storage-options", "enable_deprecated=1"),
    ],
)
def test_not_imported_store_refuses_to_start(tmp_path: Path, flags) -> None:
    name = flags[1]
    folder = {"filekv": "dbkv", "file": "db"}[name]
    completed = _twistd(tmp_path, *flags)
    assert completed.returncode == 1
    (line,) = [line for line in completed.stdout.splitlines() if "could not start" in line]
    assert (
        f"nanomdm-tw-migrate --from-storage {name} --from-dsn {folder} "
        f"--storage {name} --storage-dsn {folder}"
    ) in line
    assert not (tmp_path / folder / "nanomdm.sqlite3").exists()  # nothing created


@pytest_twisted.ensureDeferred
async def test_empty_import_still_refuses(tmp_path: Path) -> None:
    (tmp_path / "dbkv" / "devices").mkdir(parents=True)  # NanoMDM ran, nothing enrolled
    assert migrate("--from-storage", "filekv", "--from-dsn", str(tmp_path / "dbkv"),
                   "--storage", "filekv", "--storage-dsn", str(tmp_path / "dbkv")) == 0
    storage = make_storage("filekv", str(tmp_path / "dbkv"), "")
    with pytest.raises(NotImported, match="no imported enrollments"):
        await storage.open()


def test_not_a_filekv_store(tmp_path: Path, capsys) -> None:
    assert migrate("--from-storage", "filekv", "--from-dsn", str(tmp_path),
                   "--storage", "sqlite", "--storage-dsn", str(tmp_path / "db")) == 1
    assert "is not a NanoMDM filekv store" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_broken_entries_are_skipped_and_reported(tmp_path: Path, ca, capsys) -> None:  # noqa: F811
    dbkv = tmp_path / "dbkv"
    s = build_filekv_store(dbkv, ca)
    # A queue entry whose command NanoMDM no longer has, and a user channel without its device.
    for raw in dbkv.glob(f"queue/*/*/{WAITING}.raw"):
        raw.unlink()
    for tok in dbkv.glob(f"users/*/*/{s.user.id}.device_ch"):
        tok.write_text("NO-SUCH-DEVICE")
    source = FileKVSource(dbkv)
    counts = {kind: source.count(kind) for kind in KINDS}
    assert (counts["users"], counts["enrollments"], counts["commands"], counts["queue"]) == (
        0, 3, 6, 5,  # the user channel's enrollment and queue go with it
    )  # fmt: skip
    assert migrate("--from-storage", "filekv", "--from-dsn", str(dbkv),
                   "--storage", "sqlite", "--storage-dsn", str(tmp_path / "db")) == 0
    err = capsys.readouterr().err
    assert f"warning: skipped queued command {WAITING} of {s.device.id}: the command" in err
    assert f"warning: skipped user channel {s.user.id}: its device NO-SUCH-DEVICE" in err


@pytest_twisted.ensureDeferred
async def test_nano2nano_sends_enrollments(tmp_path: Path, ca) -> None:  # noqa: F811
    dbkv = tmp_path / "dbkv"
    scenario = build_filekv_store(dbkv, ca)
    ca.save(tmp_path / "data" / "devca")
    async with serve(tmp_path, migration=True, retro=True) as server:

        async def run(api_key: str) -> tuple[bytes, bytes, int]:
            return await getProcessOutputAndValue(
                sys.executable,
                ["-m", "nanomdm_tw.tools.migrate", "--from-storage", "filekv",
                 "--from-dsn", str(dbkv), "--to-url", server.url + "/migration",
                 "--api-key", api_key],
                env=dict(os.environ, PYTHONPATH=str(ROOT)), reactor=reactor,
            )  # fmt: skip

        out, err, code = await run("wrong key")
        assert code == 1
        assert b"check --to-url" in err
        out, err, code = await run(server.api_key)
        assert code == 0, err
        device, user = scenario.device.id, scenario.user.id
        expected = []
        for udid in sorted([device, scenario.fixture_udid]):  # each device, then its users
            expected += [f"sent Authenticate {udid}", f"sent TokenUpdate {udid}"]
            expected += [f"sent TokenUpdate {user}"] if udid == device else []
        assert out.decode().splitlines() == expected
        push = await server.storage.retrieve_push_info([device, user, scenario.gone.id])
        assert set(push) == {device, user}  # the checked-out device is not sent
        assert push[device].token == scenario.device.push_token
        # As after NanoMDM's nano2nano, the device associates its certificate with -retro.
        s = scenario.at(server.url, server.http)
        assert (await s.device.idle()).code == 200


@pytest_twisted.ensureDeferred
async def test_deprecated_file_store_imported_and_served(
    tmp_path: Path, ca, fake  # noqa: F811
) -> None:
    scenario = build_filekv_store(tmp_path / "dbkv", ca)
    db = tmp_path / "db"
    write_file_store(db, FileKVSource(tmp_path / "dbkv"))
    argv = ("--from-storage", "file", "--from-dsn", str(db),
            "--storage", "file", "--storage-dsn", str(db))  # fmt: skip
    assert migrate(*argv) == 0
    assert migrate(*argv) == 0
    source = FileStoreSource(db)
    assert source.warnings == []
    assert [(kind, source.count(kind)) for kind in KINDS] == [
        ("devices", 3), ("users", 1), ("enrollments", 4), ("commands", 6), ("queue", 7),
        ("results", 4), ("push_certs", 1), ("cert_auth", 2),
    ]  # fmt: skip
    database = db / "nanomdm.sqlite3"
    assert rows(database, "SELECT COUNT(*), MIN(stale_token) FROM push_certs") == [
        (1, 1_700_000_000)  # NanoMDM's was the certificate file's time
    ]
    assert rows(database, "SELECT COUNT(*) FROM enrollment_queue") == [(7,)]
    ca.save(tmp_path / "data" / "devca")
    (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
    async with serve(
        tmp_path, StorageSpec("file", str(db), "enable_deprecated=1"),
        apns_url=fake.base_url, apns_ca=str(tmp_path / "apns-ca.pem"),
    ) as server:  # fmt: skip
        await assert_devices_carry_on(server, scenario, fake, FILE_STORE_ORDER)
