"""
The ``-storage-options`` string: comma-separated ``key=value`` pairs.

NanoMDM's SQL backends know one option, ``delete=1``: drop results, queue
rows and commands once every enrollment has answered them.  The MySQL
backend adds its connection pool's knobs, named after Go's ``sql.DB``
settings: ``max_open_conns``, ``min_open_conns``, ``conn_max_lifetime`` and
``conn_max_idle_time`` (Go durations such as ``30s``, ``5m``, ``1h``; 0 is
no limit), and ``driver``: ``mysqlclient`` or ``pymysql`` (by default
mysqlclient when it is installed).

Ours, for every backend: ``retention``, how long answered and cleared
commands are kept (``30d``, ``720h``: a Go duration or a number of days);
older history is pruned in small batches off the request path
(retention.py).  Pending commands are never pruned.
"""

from collections.abc import Callable
from typing import Any

from ..duration import parse_duration

_BOOLEANS = {"1": True, "0": False}
_DRIVERS = ("mysqlclient", "pymysql")


def _boolean(text: str) -> bool:
    if text not in _BOOLEANS:
        raise ValueError(f"{text!r} (use 0 or 1)")
    return _BOOLEANS[text]


def _driver(text: str) -> str:
    if text not in _DRIVERS:
        raise ValueError(f"{text!r} (use {' or '.join(_DRIVERS)})")
    return text


def _connections(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} (use a number of connections, at least 1)")
    return int(text)


def _retention(text: str) -> float:
    seconds = parse_duration(text, days=True)
    if seconds <= 0:
        raise ValueError(f"{text!r} (use a period longer than zero, e.g. 30d or 720h)")
    return seconds


_PARSERS: dict[str, Callable[[str], Any]] = {
    "delete": _boolean,
    # NanoMDM's -storage file demands it; ours serves an imported store either way.
    "enable_deprecated": _boolean,
    "max_open_conns": _connections,
    "min_open_conns": _connections,
    "conn_max_lifetime": parse_duration,
    "conn_max_idle_time": parse_duration,
    "driver": _driver,
    "retention": _retention,
}


def parse_storage_options(text: str) -> dict[str, Any]:
    """Parse ``delete=1,max_open_conns=20`` style options; raise ValueError on anything else."""
    options: dict[str, Any] = {}
    if not text.strip():
        return options
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"invalid storage option {pair!r}: expected key=value, e.g. delete=1"
            )
        parse = _PARSERS.get(key)
        if parse is None:
            raise ValueError(
                f"unknown storage option {key!r}: known are {', '.join(_PARSERS)}"
            )
        try:
            options[key] = parse(value.strip())
        except ValueError as e:
            raise ValueError(f"invalid value for {key} option: {e}") from None
    return options
