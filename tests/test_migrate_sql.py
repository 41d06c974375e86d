"""nanomdm-tw-migrate on NanoMDM MySQL and PostgreSQL databases made from NanoMDM's schemas."""

import dataclasses
from pathlib import Path

import pytest
import pytest_twisted

from nanomdm_tw.migrate.filekv import FileKVSource
from nanomdm_tw.migrate.records import KINDS
from nanomdm_tw.migrate.sqlsource import SQLSource
from nanomdm_tw.settings import StorageSpec
from nanomdm_tw.tools.migrate import main

from . import mysqlserver, pgsqlserver
from .fake_apns import ca, fake  # noqa: F401 (fixtures)
from .migrate_scenario import assert_devices_carry_on, build_filekv_store
from .nanomdm_sql import fill, nanomdm_database
from .serving import serve

EMPTY_DATABASES = {
    "mysql": lambda: mysqlserver.ThrowawayDatabase(with_schema=False),
    "pgsql": lambda: pgsqlserver.ThrowawayDatabase(with_schema=False),
}


def snapshot(source) -> dict[str, list]:
    """Every record of a source, times aside; each enrollment's queue in its order."""
    records = {}
    for kind in KINDS:
        found = list(source.read(kind))
        if kind == "enrollments":
            found = [dataclasses.replace(e, last_seen_at=None) for e in found]
        records[kind] = sorted(found, key=repr) if kind != "queue" else found
    source.close()
    return records


def last_seen(source) -> dict[str, float]:
    times = {e.id: e.last_seen_at for e in source.read("enrollments")}
    source.close()
    return times


@pytest.mark.parametrize("source, target", [("mysql", "pgsql"), ("pgsql", "mysql")])
@pytest_twisted.ensureDeferred
async def test_nanomdm_database_copied_and_served(
    tmp_path: Path, ca, fake, source: str, target: str  # noqa: F811
) -> None:
    dbkv = tmp_path / "dbkv"
    scenario = build_filekv_store(dbkv, ca)
    nanomdm = nanomdm_database(source)
    ours = EMPTY_DATABASES[target]()  # the import creates our schema
    try:
        fill(nanomdm, FileKVSource(dbkv))
        argv = ("--no-progress", "--from-storage", source, "--from-dsn", nanomdm.dsn,
                "--storage", target, "--storage-dsn", ours.dsn)  # fmt: skip
        assert main(list(argv)) == 0
        assert main(list(argv)) == 0  # again: nothing twice
        expected = snapshot(FileKVSource(dbkv))
        assert snapshot(SQLSource(target, ours.dsn)) == expected
        assert snapshot(SQLSource(source, nanomdm.dsn)) == expected
        assert last_seen(SQLSource(target, ours.dsn)) == last_seen(SQLSource(source, nanomdm.dsn))

        ca.save(tmp_path / "data" / "devca")
        (tmp_path / "apns-ca.pem").write_bytes(ca.cert_pem)
        async with serve(
            tmp_path, StorageSpec(target, ours.dsn, ""),
            apns_url=fake.base_url, apns_ca=str(tmp_path / "apns-ca.pem"),
        ) as server:  # fmt: skip
            await assert_devices_carry_on(server, scenario, fake)
    finally:
        nanomdm.drop()
        ours.drop()


def test_unreachable_source_says_what_to_check(tmp_path: Path, capsys) -> None:
    assert main(["--from-storage", "mysql", "--from-dsn", "nobody@tcp(127.0.0.1:1)/nanomdm",
                 "--storage", "sqlite", "--storage-dsn", str(tmp_path / "db")]) == 1
    err = capsys.readouterr().err
    assert "nanomdm-tw-migrate: cannot read the mysql database: (2003, \"Can't connect" in err
    assert err.rstrip().endswith("check --from-storage and --from-dsn")


@pytest.mark.parametrize(
    "storage, dsn, message",
    [
        ("mysql", "nobody@tcp(127.0.0.1:1)/nanomdm", "cannot write to --storage mysql: (2003"),
        ("inmem", "", "--storage inmem keeps nothing once this command exits"),
    ],
)
def test_unusable_target_says_what_to_check(
    tmp_path: Path, ca, capsys, storage: str, dsn: str, message: str  # noqa: F811
) -> None:
    build_filekv_store(tmp_path / "dbkv", ca)
    assert main(["--from-storage", "filekv", "--from-dsn", str(tmp_path / "dbkv"),
                 "--storage", storage, "--storage-dsn", dsn]) == 1  # fmt: skip
    assert message in capsys.readouterr().err
