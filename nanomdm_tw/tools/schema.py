"""
nanomdm-tw-schema: create NanoMDM's MySQL schema, or report what a database lacks.

    nanomdm-tw-schema mysql --dsn 'user:pass@tcp(host:3306)/nanomdm'          # create / upgrade
    nanomdm-tw-schema mysql --dsn 'user:pass@tcp(host:3306)/nanomdm' --check  # report only
    nanomdm-tw-schema mysql --print                                           # the DDL

A database NanoMDM created is upgraded by adding our one column
(enrollment_queue.seq); NanoMDM keeps working on it.  A short run of its
own, outside the server, because DDL is not something several servers
starting at once should race to do.
"""

import argparse
import sys

import pymysql

from ..storage.mysql import MySQLStorage, missing_schema, schema_sql


def upgrade(dsn: str, check_only: bool = False) -> tuple[int, int, list[str]]:
    """(version before, version after, what is still missing) for the database at ``dsn``."""
    storage = MySQLStorage(dsn)
    connection = pymysql.connect(**storage.dsn.connect_kwargs())
    try:
        with connection.cursor() as cursor:
            before = storage._schema_version(cursor)
            if not check_only:
                storage._transaction(cursor, storage._upgrade_schema)
            after = storage._schema_version(cursor)
            missing = missing_schema(cursor)
        connection.commit()
    finally:
        connection.close()
    return before, after, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nanomdm-tw-schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("dialect", choices=["mysql"])
    parser.add_argument("--dsn", help="go-sql-driver DSN, as given to --storage-dsn")
    parser.add_argument(
        "--check", action="store_true", help="report what is missing; change nothing"
    )
    parser.add_argument("--print", action="store_true", help="print the schema DDL and exit")
    args = parser.parse_args(argv)
    if args.print:
        print(schema_sql())
        return 0
    if not args.dsn:
        parser.error("--dsn is required (or --print)")
    try:
        before, after, missing = upgrade(args.dsn, check_only=args.check)
    except (pymysql.MySQLError, ValueError) as e:
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
