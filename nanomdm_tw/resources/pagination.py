"""
Query parameters, page sizes and cursors of the inspection API.

A cursor is where the previous page ended, encoded so clients treat it as
opaque (URL-safe base64 of a small JSON array tagged with what it pages):
the backends page by keyset, so a page costs the same deep into a large
table, and rows deleted between pages neither repeat nor skip the rest.
A cursor that does not decode to a position of the right kind is the
client's mistake: 400, never a 500 from storage.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from twisted.web.server import Request

from ..errors import MessageError
from .clienttext import checked_text

DEFAULT_LIMIT = 100  # NanoMDM's defaultEnrollmentsLimit
MAX_LIMIT = 1000

# What a cursor pages, and the JSON types of its position.
ENROLLMENTS = "e"
QUEUE = "q"
DELIVERIES = "d"
_POSITIONS: dict[str, tuple[type, ...]] = {
    ENROLLMENTS: (str,),
    QUEUE: (int, int),
    DELIVERIES: (str,),
}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class QueryArgs:
    """The URL's query parameters, every value of each (``?id=A&id=B``)."""

    def __init__(self, query: str):
        self._values = parse_qs(query, keep_blank_values=True)
        for name, values in self._values.items():
            for value in (name, *values):
                checked_text(value, "the URL query")

    @classmethod
    def of(cls, request: Request) -> "QueryArgs":
        return cls(request.uri.partition(b"?")[2].decode("utf-8", "replace"))

    def all(self, name: str) -> tuple[str, ...]:
        return tuple(self._values.get(name, ()))

    def one(self, name: str) -> str | None:
        """The value of a parameter that may be given once; None when absent."""
        values = self._values.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise MessageError(f"query parameter {name} given more than once")
        return values[0]

    def flag(self, name: str) -> bool:
        """``1``/``true`` or ``0``/``false`` (absent or empty: false)."""
        value = (self.one(name) or "false").lower()
        if value not in ("1", "true", "0", "false"):
            raise MessageError(f"query parameter {name} must be 1, true, 0 or false")
        return value in ("1", "true")

    def refuse_unknown(self, known: Iterable[str]) -> None:
        """A misspelt filter would silently list everything: name it instead."""
        unknown = sorted(set(self._values) - set(known))
        if unknown:
            raise MessageError(f"unknown query parameter(s): {', '.join(unknown)}")


def encode_cursor(kind: str, *position: object) -> str:
    text = json.dumps([kind, *position], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")


def decode_cursor(kind: str, cursor: str) -> tuple:
    """The position a cursor of ours holds, or a 400."""
    invalid = MessageError("invalid cursor: pass the next_cursor of a previous answer")
    if not _BASE64URL.fullmatch(cursor):
        raise invalid
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise invalid from None
    types = _POSITIONS[kind]
    if (
        not isinstance(decoded, list)
        or decoded[:1] != [kind]
        or len(decoded) != 1 + len(types)
        or not all(type(value) is expected for value, expected in zip(decoded[1:], types))
    ):
        raise invalid
    return tuple(decoded[1:])


@dataclass(frozen=True, slots=True)
class Page:
    """Which page a request asks for: ``after`` (a cursor's position) or ``offset``."""

    kind: str
    limit: int
    offset: int | None = None
    after: tuple | None = None

    def split(
        self, rows: Sequence, position: Callable[[object], tuple]
    ) -> tuple[Sequence, str | None]:
        """
        The page of ``rows`` (fetched with ``limit + 1``) and the next cursor:
        None on the last page, and with offset pagination (as NanoMDM).
        """
        if len(rows) <= self.limit:
            return rows, None
        rows = rows[: self.limit]
        if self.offset is not None:
            return rows, None
        return rows, encode_cursor(self.kind, *position(rows[-1]))


def _integer(text: str, name: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        raise MessageError(f"query parameter {name} must be an integer")
    return int(text)


def parse_page(args: QueryArgs, kind: str, nanomdm: bool = False) -> Page:
    """
    ``limit`` (1..1000, default 100) and ``cursor``, and with ``nanomdm``
    NanoMDM's rules: ``offset`` too, and a limit below 1 means the default.
    Empty values count as absent, as in NanoMDM.
    """
    limit_text = args.one("limit") or ""
    limit = _integer(limit_text, "limit") if limit_text else DEFAULT_LIMIT
    if limit < 1:
        if not nanomdm:
            raise MessageError(f"limit must be between 1 and {MAX_LIMIT}")
        limit = DEFAULT_LIMIT
    if limit > MAX_LIMIT:
        raise MessageError(f"limit must be between 1 and {MAX_LIMIT}")
    cursor = args.one("cursor") or None
    offset_text = args.one("offset") or None
    offset = None
    if offset_text is not None:
        if not nanomdm:
            raise MessageError("offset is not supported here: page with cursor=next_cursor")
        if cursor is not None:
            raise MessageError("both cursor and offset set")
        offset = _integer(offset_text, "offset")
        if offset < 0:
            raise MessageError("offset must not be negative")
    after = decode_cursor(kind, cursor) if cursor is not None else None
    return Page(kind, limit, offset, after)
