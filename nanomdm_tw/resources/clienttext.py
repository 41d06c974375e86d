"""
Text from API clients that every storage backend can hold and look up.

PostgreSQL text cannot contain NUL (psycopg refuses it before sending), so
an ID, filter value or topic with one was a 500 on PostgreSQL alone and an
empty answer elsewhere.  No MDM identifier holds a NUL: it is the client's
mistake, a 400 on every backend alike.
"""

from ..errors import MessageError


def checked_text(value: str, what: str) -> str:
    if "\x00" in value:
        raise MessageError(f"{what} contains a NUL character")
    return value
