"""
nanomdm-tw-schema: create NanoMDM's MySQL or PostgreSQL schema, or report what a database lacks.

    nanomdm-tw-schema mysql --dsn 'user:pass@tcp(host:3306)/nanomdm'          # create / upgrade
    nanomdm-tw-schema mysql --dsn 'user:pass@tcp(host:3306)/nanomdm' --check  # report only
    nanomdm-tw-schema pgsql --dsn 'postgres://user:pass@host/nanomdm?sslmode=disable'
    nanomdm-tw-schema mysql --print                                           # the DDL

A database NanoMDM created is upgraded by adding our one column
(enrollment_queue.seq) and, on PostgreSQL, indexes for lookups its schema
leaves to full scans; NanoMDM keeps working on it.  A short run of its
own, outside the server, because DDL is not something several servers
starting at once should race to do.
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

from ..storage import mysql
from ..storage.networked import schema_sql
from ..storage.sql import SQLStorage


@dataclass(frozen=True)
class _Dialect:
    """What the command needs of a backend: a plain connection and its schema report."""

    connect: Callable[[str], tuple[SQLStorage, Any]]
    missing_schema: Callable[[Any], list[str]]
    errors: tuple[type[Exception], ...]


def _mysql() -> _Dialect:
    def connect(dsn: str) -> tuple[SQLStorage, Any]:
        storage = mysql.MySQLStorage(dsn)
        return storage, pymysql.connect(**storage.dsn.connect_kwargs())

    return _Dialect(connect, mysql.missing_schema, (pymysql.MySQLError,))


def _pgsql() -> _Dialect:
    import psycopg

    from ..storage import pgsql

    def connect(dsn: str) -> tuple[SQLStorage, Any]:
        storage = pgsql.PgSQLStorage(dsn)
        return storage, psycopg.connect(storage.dsn.conninfo)

    return _Dialect(connect, pgsql.missing_schema, (psycopg.Error,))


_DIALECTS = {"mysql": _mysql, "pgsql": _pgsql}


def connect(dsn: str, dialect: str = "mysql") -> tuple[SQLStorage, Any]:
    """A plain DB-API connection to the database at ``dsn``, and the backend reading its DSN."""
    return _DIALECTS[dialect]().connect(dsn)


def upgrade(
    dsn: str, check_only: bool = False, dialect: str = "mysql"
) -> tuple[int, int, list[str]]:
    """(version before, version after, what is still missing) for the database at ``dsn``."""
    backend = _DIALECTS[dialect]()
    storage, connection = backend.connect(dsn)
    try:
        with connection.cursor() as cursor:
            before = storage._schema_version(cursor)
            if not check_only:
                storage._transaction(cursor, storage._upgrade_schema)
            after = storage._schema_version(cursor)
            missing = backend.missing_schema(cursor)
        connection.commit()
    finally:
        connection.close()
    return before, after, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nanomdm-tw-schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("dialect", choices=list(_DIALECTS))
    parser.add_argument(
        "--dsn", help="the DSN given to --storage-dsn (go-sql-driver or lib/pq form)"
    )
    parser.add_argument(
        "--check", action="store_true", help="report what is missing; change nothing"
    )
    parser.add_argument("--print", action="store_true", help="print the schema DDL and exit")
    args = parser.parse_args(argv)
    backend = _DIALECTS[args.dialect]()
    if args.print:
        print(schema_sql(args.dialect))
        return 0
    if not args.dsn:
        parser.error("--dsn is required (or --print)")
    try:
        before, after, missing = upgrade(args.dsn, args.check, args.dialect)
    except (*backend.errors, ValueError) as e:
        print(f"nanomdm-tw-schema: {e}", file=sys.stderr)
        return 2
    if after != before:
        print(f"schema upgraded from version {before} to {after}")
    if missing:
        print("the database lacks: " + ", ".join(missing))
        return 1
    print(f"schema complete (version {after})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
