"""
nanomdm-tw-migrate: copy a NanoMDM store into nanomdm-tw, or send it to a /migration endpoint.

    nanomdm-tw-migrate --from-storage filekv --from-dsn dbkv --storage filekv --storage-dsn dbkv
    nanomdm-tw-migrate --from-storage mysql --from-dsn 'user:pass@tcp(host:3306)/nanomdm' \\
        --storage sqlite --storage-dsn db
    nanomdm-tw-migrate --from-storage filekv --from-dsn dbkv \\
        --to-url https://mdm.example.org/migration --api-key KEY

The first form copies everything (devices, users, enrollments, queues with
their results, push certificates, cert-auth associations) into one of our
backends; running it again replaces what it copied before and adds no
duplicates.  The last does what NanoMDM's nano2nano does.
"""

import argparse
import sqlite3
import sys
from typing import Any

from tqdm import tqdm
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from ..migrate.filekv import FileKVSource
from ..migrate.filestore import FileStoreSource
from ..migrate.records import KINDS, Source
from ..migrate.sqlsource import SQLSource
from ..migrate.target import Target
from ..migrate.writer import BATCH, Writer, batches
from ..storage import STORAGE_NAMES

SOURCES = ("filekv", "file", "mysql", "pgsql", "sqlite")
_DEFAULT_SOURCE_DSN = {"filekv": "dbkv", "file": "db", "sqlite": "db"}

# How the summary names each kind.
_NOUNS = {
    "devices": "devices",
    "users": "user channels",
    "enrollments": "enrollments",
    "commands": "commands",
    "queue": "queue entries",
    "results": "command results",
    "push_certs": "push certificates",
    "cert_auth": "cert-auth associations",
}


class MigrateError(Exception):
    """What went wrong, worded for the user, with what to do about it."""


def open_source(kind: str, dsn: str) -> Source:
    if kind == "filekv":
        return FileKVSource(dsn)
    if kind == "file":
        return FileStoreSource(dsn)
    return SQLSource(kind, dsn)


def copy_store(source: Source, writer: Writer, progress: bool = True) -> dict[str, int]:
    """Copy every kind, parents first, in batches; how many records of each were written."""
    copied = {}
    for kind in KINDS:
        copied[kind] = 0
        with tqdm(
            total=source.count(kind), desc=f"{_NOUNS[kind]:>22}", unit=" rows",
            file=sys.stderr, disable=None if progress else True,  # None: on a terminal only
        ) as bar:  # fmt: skip
            for batch in batches(source.read(kind), BATCH):
                writer.write(kind, batch)
                copied[kind] += len(batch)
                bar.update(len(batch))
    return copied


def summary(copied: dict[str, int]) -> str:
    return "copied " + ", ".join(f"{count} {_NOUNS[kind]}" for kind, count in copied.items())


def _database_errors() -> tuple[type[BaseException], ...]:
    import psycopg
    import pymysql

    return (pymysql.MySQLError, psycopg.Error, sqlite3.Error)


def _open_target(args: argparse.Namespace) -> Target:
    try:
        return Target(args.storage, args.storage_dsn, args.storage_options)
    except (*_database_errors(), ValueError, OSError) as e:
        raise MigrateError(
            f"cannot write to --storage {args.storage}: {e}; check --storage-dsn"
        ) from None


def _import(args: argparse.Namespace, source: Source) -> None:
    target = _open_target(args)
    try:
        print(f"copying into {target.describe()}", file=sys.stderr)
        copied = copy_store(source, Writer(target), progress=args.progress)
    except (*_database_errors(), ValueError, OSError) as e:
        raise MigrateError(
            f"{e.__class__.__name__}: {e}; what was copied before stays: fix the cause "
            "and run the same command again"
        ) from None
    finally:
        target.close()
    print(summary(copied))


def _send(args: argparse.Namespace, source: Source) -> None:
    """nano2nano: PUT the check-ins one by one, printing each outcome."""
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from ..migrate.nano2nano import migration_checkins, send_checkins

    failures = []

    def sent(checkin: Any, error: str | None) -> None:
        line = f"{checkin.message_type} {checkin.enrollment_id}"
        if error is None:
            print(f"sent {line}")
        else:
            failures.append(line)
            print(f"failed {line}: {error}", file=sys.stderr)

    async def send_all(reactor: Any) -> None:
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, pool=pool))
        await send_checkins(http, args.to_url, args.api_key, migration_checkins(source), sent)

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(send_all(reactor)))
    except SystemExit as e:  # react always exits; non-zero when send_all raised
        if e.code:
            raise MigrateError(f"sending to {args.to_url} stopped (see above)") from None
    if failures:
        raise MigrateError(
            f"{len(failures)} check-in(s) were not accepted: check --to-url (the server's "
            "/migration endpoint, enabled with -migration), --api-key and the server's log"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nanomdm-tw-migrate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    source = parser.add_argument_group("the NanoMDM store to read")
    source.add_argument("--from-storage", required=True, choices=SOURCES)
    source.add_argument(
        "--from-dsn", help="its -storage-dsn (filekv: the folder, default dbkv; file: db)"
    )
    target = parser.add_argument_group("where to copy it (our --storage flags)")
    target.add_argument("--storage", choices=STORAGE_NAMES)
    target.add_argument(
        "--storage-dsn", default="", help="as the server's (sqlite: a folder, default db)"
    )
    target.add_argument("--storage-options", default="", help="as the server's")
    send = parser.add_argument_group("or send the enrollments to a /migration endpoint")
    send.add_argument("--to-url", help="e.g. https://mdm.example.org/migration")
    send.add_argument("--api-key", help="the receiving server's API key")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false",
        help="no progress bars (they are shown only on a terminal anyway)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if (args.storage is None) == (args.to_url is None):
        parser.error("give either --storage (copy) or --to-url (send), not both")
    if args.to_url and not args.api_key:
        parser.error("--to-url needs --api-key")
    if args.from_dsn is None:
        if args.from_storage not in _DEFAULT_SOURCE_DSN:
            parser.error(f"--from-storage {args.from_storage} needs --from-dsn")
        args.from_dsn = _DEFAULT_SOURCE_DSN[args.from_storage]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Folders by name; a database's DSN may hold a password.
    where = args.from_dsn if args.from_storage in ("filekv", "file") else "database"
    print(f"reading the {args.from_storage} {where}", file=sys.stderr)
    try:
        source = open_source(args.from_storage, args.from_dsn)
    except (*_database_errors(), ValueError, OSError) as e:
        print(f"nanomdm-tw-migrate: cannot read the {args.from_storage} {where}: {e}; "
              "check --from-storage and --from-dsn", file=sys.stderr)  # fmt: skip
        return 1
    try:
        (_send if args.to_url else _import)(args, source)
    except MigrateError as e:
        print(f"nanomdm-tw-migrate: {e}", file=sys.stderr)
        return 1
    finally:
        for warning in source.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        source.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
