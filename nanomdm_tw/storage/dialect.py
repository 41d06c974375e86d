"""
What differs between the SQL databases we speak to, and their schema files.

Queries are written once, against NanoMDM's MySQL table and column names,
with ``?`` placeholders.  A ``Dialect`` rewrites placeholders into the
driver's paramstyle and spells the upsert, the one statement the dialects
disagree on.  Each dialect's schema lives in versioned files under
``schema/<dialect>/``.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

_SCHEMA_FILE = re.compile(r"^(\d+)_[\w-]+\.sql$")


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL databases we speak to."""

    name: str  # also the folder under schema/ holding its versioned files
    paramstyle: str  # "qmark" (sqlite3) or "format" (pymysql, psycopg)
    upsert_style: str  # "on_conflict" (SQLite, PostgreSQL) or "on_duplicate_key"
    # ORDER BY of the next-command query, matching the dialect's queue index.
    queue_order: str = "q.priority DESC, q.seq"
    # Appended to a SELECT that must see the latest committed row, not a snapshot.
    share_lock: str = ""
    # What a table-less SELECT with a WHERE needs after its columns (MySQL: FROM DUAL).
    no_table: str = ""
    # A TIMESTAMP column as seconds since the epoch, whatever the session's time zone.
    epoch: str = "CAST(strftime('%s', {}) AS INTEGER)"

    def sql(self, query: str) -> str:
        if self.paramstyle == "qmark":
            return query
        return query.replace("?", "%s")

    def seconds(self, column: str) -> str:
        """Select ``column`` as epoch seconds: times read back alike from every database."""
        return self.epoch.format(column)

    def upsert(
        self,
        table: str,
        values: dict[str, str],
        key: Sequence[str],
        copy: Sequence[str] = (),
        assign: Sequence[str] = (),
        only_if: str = "",
    ) -> str:
        """
        INSERT one row, or on a key conflict update the existing one.

        ``values`` maps columns to SQL expressions (``?`` or e.g.
        CURRENT_TIMESTAMP); ``copy`` columns take the new row's value;
        ``assign`` holds extra ``column = expression`` clauses, where
        ``table.column`` means the existing row's value.  Nothing to copy
        or assign means insert-if-absent.  ``only_if``: a condition
        without which nothing is written (rowcount 0), in the same statement.
        """
        if only_if:
            insert = "INSERT INTO {} ({}) SELECT {}{} WHERE {}".format(
                table, ", ".join(values), ", ".join(values.values()), self.no_table, only_if
            )
        else:
            insert = "INSERT INTO {} ({}) VALUES ({})".format(
                table, ", ".join(values), ", ".join(values.values())
            )
        if self.upsert_style == "on_conflict":
            updates = [f"{c} = excluded.{c}" for c in copy] + list(assign)
            if not updates:
                return f"{insert} ON CONFLICT ({', '.join(key)}) DO NOTHING"
            return "{} ON CONFLICT ({}) DO UPDATE SET {}".format(
                insert, ", ".join(key), ", ".join(updates)
            )
        # VALUES(col), not MySQL 8's "AS new ... new.col": MariaDB rejects the
        # latter, MySQL 8 still accepts the former.
        updates = [f"{c} = VALUES({c})" for c in copy] + list(assign)
        if not updates:
            return f"{insert} ON DUPLICATE KEY UPDATE {key[0]} = {key[0]}"
        return f"{insert} ON DUPLICATE KEY UPDATE {', '.join(updates)}"


def schema_files(dialect: str) -> list[tuple[int, list[str]]]:
    """The versioned schema files of ``dialect`` as (version, statements), oldest first."""
    versions = []
    for entry in (files(__package__) / "schema" / dialect).iterdir():
        match = _SCHEMA_FILE.match(entry.name)
        if match:
            versions.append((int(match.group(1)), split_statements(entry.read_text())))
    return sorted(versions)


def split_statements(script: str) -> list[str]:
    """Statements of a schema file: each ends with ``;`` at the end of a line."""
    statements, lines = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        lines.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(lines).rstrip().rstrip(";"))
            lines = []
    if lines:
        statements.append("\n".join(lines))
    return statements
