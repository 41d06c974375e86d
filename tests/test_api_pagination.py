"""Page sizes, offsets and opaque cursors of the inspection API: every bad value is a 400."""

import base64
import json

import pytest

from nanomdm_tw.errors import MessageError
from nanomdm_tw.resources.pagination import (
    DELIVERIES,
    ENROLLMENTS,
    QUEUE,
    Page,
    QueryArgs,
    decode_cursor,
    encode_cursor,
    parse_page,
)


def raw_cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "kind, position",
    [(ENROLLMENTS, ("UDID-1:user/with?odd=chars",)), (QUEUE, (-3, 12345678901)),
     (DELIVERIES, ("é",))],
)  # fmt: skip
def test_cursor_round_trip(kind, position) -> None:
    cursor = encode_cursor(kind, *position)
    assert set(cursor) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert decode_cursor(kind, cursor) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "a b",
        "abc",  # base64 of no JSON
        "A",  # not even base64
        raw_cursor({"e": "x"}),
        raw_cursor(["q", 1, 2]),  # a queue cursor where an enrollment cursor goes
        raw_cursor(["e"]),
        raw_cursor(["e", "x", "y"]),
        raw_cursor(["e", 5]),
        raw_cursor([]),
        raw_cursor("e"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_foreign_cursors_are_400(cursor) -> None:
    with pytest.raises(MessageError, match="invalid cursor") as raised:
        decode_cursor(ENROLLMENTS, cursor)
    assert raised.value.status == 400


@pytest.mark.parametrize("position", [[True, 1], [1.5, 1], ["1", 1], [1, None], [1]])
def test_queue_cursor_needs_two_integers(position) -> None:
    with pytest.raises(MessageError):
        decode_cursor(QUEUE, raw_cursor(["q", *position]))


def page(query: str, kind: str = ENROLLMENTS, nanomdm: bool = False) -> Page:
    return parse_page(QueryArgs(query), kind, nanomdm=nanomdm)


@pytest.mark.parametrize(
    "query, nanomdm, expected",
    [
        ("", False, Page(ENROLLMENTS, 100)),
        ("limit=", True, Page(ENROLLMENTS, 100)),
        ("limit=1", False, Page(ENROLLMENTS, 1)),
        ("limit=1000", False, Page(ENROLLMENTS, 1000)),
        ("limit=0", True, Page(ENROLLMENTS, 100)),  # NanoMDM: below 1 is the default
        ("limit=-5", True, Page(ENROLLMENTS, 100)),
        ("limit=7&offset=0", True, Page(ENROLLMENTS, 7, 0)),
        ("offset=30", True, Page(ENROLLMENTS, 100, 30)),
        ("cursor=", True, Page(ENROLLMENTS, 100)),  # NanoMDM: the empty cursor is the start
        ("cursor=" + encode_cursor(ENROLLMENTS, "B"), False, Page(ENROLLMENTS, 100, None, ("B",))),
        ("unrelated=1", True, Page(ENROLLMENTS, 100)),
    ],
)  # fmt: skip
def test_pages(query, nanomdm, expected) -> None:
    assert page(query, nanomdm=nanomdm) == expected


@pytest.mark.parametrize(
    "query, nanomdm, message",
    [
        ("limit=0", False, "limit must be between 1 and 1000"),
        ("limit=1001", True, "limit must be between 1 and 1000"),
        ("limit=ten", True, "limit must be an integer"),
        ("limit=1.5", True, "limit must be an integer"),
        ("limit=99999999999999999999999", True, "limit must be an integer"),
        ("limit=1&limit=2", True, "limit given more than once"),
        ("offset=x", True, "offset must be an integer"),
        ("offset=-1", True, "offset must not be negative"),
        ("offset=1&cursor=" + encode_cursor(ENROLLMENTS, "A"), True, "both cursor and offset set"),
        ("offset=1", False, "offset is not supported here"),
        ("cursor=garbage!", True, "invalid cursor"),
    ],
)  # fmt: skip
def test_bad_pages_are_400(query, nanomdm, message) -> None:
    with pytest.raises(MessageError, match=message) as raised:
        page(query, nanomdm=nanomdm)
    assert raised.value.status == 400


def test_split_gives_a_cursor_only_when_more_rows_follow() -> None:
    rows = ["a", "b", "c"]
    assert Page(ENROLLMENTS, 3).split(rows, lambda r: (r,)) == (rows, None)
    assert Page(ENROLLMENTS, 5).split(rows, lambda r: (r,)) == (rows, None)
    first, cursor = Page(ENROLLMENTS, 2).split(rows, lambda r: (r,))
    assert first == ["a", "b"] and decode_cursor(ENROLLMENTS, cursor) == ("b",)
    assert Page(ENROLLMENTS, 2, offset=0).split(rows, lambda r: (r,)) == (["a", "b"], None)


def test_query_args() -> None:
    args = QueryArgs("id=A&id=B%2C&enabled=true&all=TRUE&none=")
    assert args.all("id") == ("A", "B,")
    assert args.all("type") == ()
    assert args.one("enabled") == "true" and args.one("topic") is None
    assert args.flag("all") and not args.flag("none") and not args.flag("absent")
    with pytest.raises(MessageError, match="given more than once"):
        args.one("id")
    with pytest.raises(MessageError, match="must be 1, true, 0 or false"):
        QueryArgs("all=yes").flag("all")
    with pytest.raises(MessageError, match="unknown query parameter.*: all, none"):
        args.refuse_unknown(("id", "enabled"))
    args.refuse_unknown(("id", "enabled", "all", "none"))
