"""
Recording the statements a storage sends, and reading each one's plan.

A ``Recorder`` wraps a storage's ``_execute`` and ``_execute_many``, so a
test sees every statement a real run sent, with its real parameters; a
statement added to the storage layer later is checked without anyone
listing it.  ``full_scans`` EXPLAINs one statement on the database's own
planner and names every read of a big table that is not an index lookup.
"""

import re
from dataclasses import dataclass
from typing import Any

from nanomdm_tw.storage.dialect import Dialect

# Tables that grow with enrollments or commands; a scan of one costs more as they do.
BIG_TABLES = {
    "devices",
    "users",
    "enrollments",
    "commands",
    "command_results",
    "enrollment_queue",
    "cert_auth_associations",
}
# MariaDB: rows a lookup may estimate to read, beyond twice its parameters (IN lists).
ROWS_LIMIT = 500

_ALIAS = re.compile(r"\b(\w+) AS (\w+)\b")
_PAGE = re.compile(r"\bORDER BY\b[^()]*\bLIMIT\b")


@dataclass(frozen=True)
class Statement:
    query: str  # with ? placeholders
    args: tuple

    @property
    def is_page(self) -> bool:
        """A page (ORDER BY ... LIMIT): walking an index in that order stops at the limit."""
        return _PAGE.search(self.query) is not None

    def tables(self) -> dict[str, str]:
        """Names the plan may use for each big table: itself and its aliases."""
        names = {t: t for t in BIG_TABLES if re.search(rf"\b{t}\b", self.query)}
        names.update(
            (alias, table) for table, alias in _ALIAS.findall(self.query) if table in BIG_TABLES
        )
        return names


class Recorder:
    """Every statement the storage sends from now on (a multi-row INSERT with its first row)."""

    def __init__(self, storage: Any):
        self.statements: list[Statement] = []
        execute, execute_many = storage._execute, storage._execute_many

        def recording_execute(txn, query, args=()):
            args = tuple(args)
            self.statements.append(Statement(query, args))
            return execute(txn, query, args)

        def recording_execute_many(txn, query, rows):
            self.statements.append(Statement(query, tuple(rows[0])))
            return execute_many(txn, query, rows)

        storage._execute = recording_execute
        storage._execute_many = recording_execute_many

    def distinct(self) -> list[Statement]:
        """One per query text and parameter count: the plans that can differ."""
        seen = {}
        for statement in self.statements:
            if statement.query != "COMMIT":
                seen.setdefault((statement.query, len(statement.args)), statement)
        return list(seen.values())


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _estimate(rows: Any) -> int:
    """MariaDB's rows column: a number, or e.g. "1 (0%)" with a rowid filter."""
    return int(str(rows or 0).split()[0])


def _mysql(cursor: Any, dialect: Dialect, statement: Statement, whole: bool) -> list[str]:
    cursor.execute("EXPLAIN " + dialect.sql(statement.query), statement.args or None)
    tables = statement.tables()
    limit = max(ROWS_LIMIT, 2 * len(statement.args))
    rows = _rows(cursor)
    # A page read in index order: its first table's estimate ignores the LIMIT.
    walked = statement.is_page and not any(
        word in (row["Extra"] or "") for row in rows for word in ("filesort", "temporary")
    )
    problems = []
    for number, row in enumerate(rows):
        table = tables.get(row["table"])
        if table is None or row["select_type"] == "INSERT":
            continue  # a small table, or the target of an INSERT ... VALUES
        if (walked and number == 0) or (whole and row["type"] == "index"):
            continue
        if row["type"] in ("ALL", "index"):
            problems.append(f"{table}: type {row['type']}, {row['rows']} rows")
        elif _estimate(row["rows"]) > limit:
            problems.append(f"{table}: {row['type']} estimated at {row['rows']} rows")
    return problems


def _plan_nodes(plan: dict[str, Any]):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def _pgsql(cursor: Any, dialect: Dialect, statement: Statement, whole: bool) -> list[str]:
    cursor.execute("EXPLAIN (FORMAT JSON) " + dialect.sql(statement.query), statement.args)
    [(plans,)] = cursor.fetchall()
    return [
        f"{node['Relation Name']}: Seq Scan"
        for plan in plans
        for node in _plan_nodes(plan["Plan"])
        if node["Node Type"] == "Seq Scan" and node["Relation Name"] in BIG_TABLES
    ]


def _sqlite(cursor: Any, dialect: Dialect, statement: Statement, whole: bool) -> list[str]:
    cursor.execute("EXPLAIN QUERY PLAN " + statement.query, statement.args)
    tables = statement.tables()
    details = [detail for *_, detail in cursor.fetchall()]
    # An index walked in the page's order (no sort after), or read whole for a count.
    index_ok = whole or (
        statement.is_page and not any("TEMP B-TREE FOR ORDER BY" in d for d in details)
    )
    problems = []
    for detail in details:
        words = detail.split()
        if words[0] == "SCAN" and words[1] in tables:
            if index_ok and " INDEX " in detail:
                continue
            problems.append(f"{tables[words[1]]}: {detail}")
    return problems


_EXPLAINERS = {"mysql": _mysql, "pgsql": _pgsql, "sqlite": _sqlite}


def full_scans(
    connection: Any, dialect: Dialect, statement: Statement, whole: bool = False
) -> list[str]:
    """
    The reads of big tables in ``statement``'s plan that are not index lookups.

    A page (ORDER BY ... LIMIT) may walk an index in its order: it stops at
    the limit.  ``whole``: a count over a whole table, which may read a whole
    index but never the table itself.
    """
    cursor = connection.cursor()
    try:
        return _EXPLAINERS[dialect.name](cursor, dialect, statement, whole)
    finally:
        cursor.close()
