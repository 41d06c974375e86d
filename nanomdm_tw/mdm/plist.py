"""
XML property lists as devices send them, read without expat for the common case.

plistlib calls a Python handler for every element and every run of
whitespace through expat; for a small check-in that is most of the cost of
decoding it.  ``loads`` reads the plain form devices send (Apple's prolog,
dict/array/key/string/integer/real/data/true/false, no entities, comments,
CDATA, attributes or carriage returns) with one regular expression, and
hands everything else to plistlib, which then accepts or refuses it.  The
fast path builds exactly what plistlib builds: it defers wherever plistlib
would raise or treat the input specially (tests pin the two together).
"""

import binascii
import plistlib
import re
from typing import Any

# What may stand before the root value: Apple's declaration and DOCTYPE.
_PROLOG = re.compile(
    r'(?:<\?xml version="1\.0" encoding="(?:UTF|utf)-8"\?>[ \t\n\r]*)?'
    r'(?:<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1\.0//EN"'
    r' "http://www\.apple\.com/DTDs/PropertyList-1\.0\.dtd">[ \t\n\r]*)?'
    r'<plist(?: version="1\.0")?>'
)
_END = re.compile(r"[ \t\n\r]*</plist>[ \t\n\r]*")
# One element: (1) a text element and (2) its text, (3) an empty one, (4) an
# opening or (5) a closing container.  Text holds no markup, entity, carriage
# return (expat turns those into line feeds) or character XML does not allow.
_TOKEN = re.compile(
    r"[ \t\n\r]*(?:<(key|string|integer|real|data)>"
    r"([^<&\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]*)</\1>"
    r"|<(true|false|dict|array|key|string|integer|real|data)/>"
    r"|<(dict|array)>|</(dict|array)>)"
)
_CONSTANTS = {"true": True, "false": False}


class _Defer(Exception):
    """Not the plain form; plistlib decides."""


def loads(raw: bytes) -> Any:
    """What ``plistlib.loads(raw)`` returns (or raises), faster for plain XML."""
    if raw[:1] == b"<":
        try:
            return _loads_plain(raw.decode("utf-8"))
        except (_Defer, UnicodeDecodeError):
            pass
    return plistlib.loads(raw)


def _loads_plain(text: str) -> Any:
    if "]]>" in text:  # not allowed in XML text
        raise _Defer
    prolog = _PROLOG.match(text)
    if prolog is None:
        raise _Defer
    position = prolog.end()
    stack: list[Any] = []  # the open containers
    closing: list[str] = []  # their element names
    key: str | None = None  # a dict's key waiting for its value
    root: list[Any] = []
    match = _TOKEN.match
    while True:
        token = match(text, position)
        if token is None:
            break
        position = token.end()
        name, value, empty, opened, closed = token.groups()
        if closed is not None:
            if not closing or closing.pop() != closed or key is not None:
                raise _Defer
            stack.pop()
            continue
        if opened is not None or empty == "dict" or empty == "array":
            value = {} if (opened or empty) == "dict" else []
        elif empty in _CONSTANTS:
            value = _CONSTANTS[empty]
        else:
            if empty is not None:
                name, value = empty, ""
            if name == "key":
                if key is not None or not stack or type(stack[-1]) is not dict:
                    raise _Defer
                key = value
                continue
            value = _scalar(name, value)
        # Where the value goes, as plistlib's add_object puts it.
        if key is not None:
            stack[-1][key] = value
            key = None
        elif not stack:
            if root:
                raise _Defer
            root.append(value)
        elif type(stack[-1]) is list:
            stack[-1].append(value)
        else:
            raise _Defer
        if opened is not None:
            stack.append(value)
            closing.append(opened)
    if stack or not root or not _END.fullmatch(text, position):
        raise _Defer
    return root[0]


def _scalar(name: str, text: str) -> Any:
    """A text element's value, converted as plistlib converts it."""
    try:
        if name == "string":
            return text
        if name == "integer":
            if text.startswith(("0x", "0X")):
                return int(text, 16)
            return int(text)
        if name == "real":
            return float(text)
        return binascii.a2b_base64(text.encode("utf-8"))
    except ValueError:  # binascii.Error included
        raise _Defer
