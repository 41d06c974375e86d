"""
Storage backends; each provides every role in ``interfaces``.

``make_storage`` turns NanoMDM's ``-storage``, ``-storage-dsn`` and
``-storage-options`` flags into a backend (not yet opened: ``open()`` does
the I/O, at service start).  The few rules every backend must word or
compute the same way live here too.
"""

import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.logger import Logger

from ..mdm.request import MDMRequest
from .interfaces import IStorage
from .options import parse_storage_options

__all__ = ["make_storage", "parse_storage_options", "STORAGE_NAMES"]

# Per-ID enqueue errors, as the API reports them in command_error.
QUEUE_ERROR_UNKNOWN = "unknown enrollment"
QUEUE_ERROR_ALREADY_QUEUED = "command UUID already queued to this enrollment"
QUEUE_ERROR_UUID_CONFLICT = "command UUID already used by a different command"

# Report statuses that finish a command for the reporting enrollment.
NOT_NOW = "NotNow"

_log = Logger()


def identity_cert_pem(request: MDMRequest) -> str | None:
    """The device identity certificate as PEM text, as NanoMDM keeps it."""
    if request.certificate is None:
        return None
    return request.certificate.public_bytes(Encoding.PEM).decode("ascii")


def new_stale_token(previous: int | None) -> int:
    """A random token differing from the previous one, so every upload is noticed."""
    while True:
        token = secrets.randbelow(2**31 - 1) + 1
        if token != previous:
            return token


def _inmem(dsn: str, options: dict) -> IStorage:
    from .memory import MemoryStorage

    if dsn:
        _log.warn("storage inmem ignores the DSN {dsn!r}", dsn=dsn)
    return MemoryStorage(options)


def _sqlite(dsn: str, options: dict) -> IStorage:
    from .sqlite import SQLiteStorage

    return SQLiteStorage(dsn or "db", options)


def _mysql(dsn: str, options: dict) -> IStorage:
    from .mysql import MySQLStorage

    return MySQLStorage(dsn, options)


def _pgsql(dsn: str, options: dict) -> IStorage:
    from .pgsql import PgSQLStorage

    return PgSQLStorage(dsn, options)


def _imported(name: str) -> Callable[[str, dict], IStorage]:
    """NanoMDM's folder stores: our SQLite database inside the folder, once imported."""

    def make(dsn: str, options: dict) -> IStorage:
        from .imported import DEFAULT_FOLDERS, ImportedStoreStorage

        return ImportedStoreStorage(name, dsn or DEFAULT_FOLDERS[name], options)

    return make


# The backends by their -storage name.
_BACKENDS: dict[str, Callable[[str, dict], IStorage]] = {
    "inmem": _inmem,
    "sqlite": _sqlite,
    "filekv": _imported("filekv"),
    "file": _imported("file"),
    "mysql": _mysql,
    "pgsql": _pgsql,
}
STORAGE_NAMES = tuple(_BACKENDS)


def make_storage(
    name: str, dsn: str, options: str, timeout: float = 0.0, max_waiting: int = 0
) -> IStorage:
    """
    The backend named by -storage, configured but not opened.

    ``timeout`` (seconds) and ``max_waiting``: the server's --storage-timeout
    and --storage-max-waiting; unset (0), work waits as long as it takes.
    """
    factory = _BACKENDS.get(name)
    if factory is None:
        raise ValueError(
            f"unknown storage backend {name!r}: choose one of {', '.join(STORAGE_NAMES)}"
        )
    parsed = parse_storage_options(options)
    if timeout:
        parsed.update(timeout=timeout, max_waiting=max_waiting)
    return factory(dsn, parsed)
