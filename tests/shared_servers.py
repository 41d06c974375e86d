"""
The machine's shared MariaDB and PostgreSQL, watched over a test run.

Tests may create and drop their own databases there but never stop,
restart or reconfigure the servers (a test that must is given a private
server).  ``started()`` says when each server last (re)started or, for
PostgreSQL, reloaded its configuration, so a run can prove it left them
alone.
"""

import psycopg
import pymysql

from . import mysqlserver, pgsqlserver


def _mariadb_started() -> float | None:
    try:
        connection = mysqlserver._connect()
    except pymysql.MySQLError:
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
                " WHERE VARIABLE_NAME = 'UPTIME'"
            )
            return float(cursor.fetchone()[0])
    finally:
        connection.close()


def _postgresql_started() -> tuple[str, str] | None:
    try:
        with pgsqlserver._connect() as connection:
            row = connection.execute(
                "SELECT pg_postmaster_start_time()::text, pg_conf_load_time()::text"
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return row


def started() -> dict[str, object]:
    """Each shared server's start (and PostgreSQL's config load) time; None if down."""
    return {"MariaDB": _mariadb_started(), "PostgreSQL": _postgresql_started()}


def disturbed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """The servers that were up before and restarted, reloaded or went down since."""
    changed = []
    for name, was in before.items():
        now = after[name]
        if was is None:
            continue
        if name == "MariaDB" and now is not None and abs(now - was) <= 2:
            continue  # uptime counts whole seconds
        if now != was:
            changed.append(f"{name}: {was} -> {now}")
    return changed
