"""
``/admin/``: the console's static files over real loopback HTTP, with the
headers that keep hostile data inert on every answer, and nothing else
reachable through it.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from nanomdm_tw.crypto.devca import DevelopmentCA
from nanomdm_tw.resources.admin import console_files
from nanomdm_tw.server import build_root
from nanomdm_tw.settings import Settings
from nanomdm_tw.storage.memory import MemoryStorage

from .serving import serve

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


def raw_request(
    url: str, target: bytes, method: bytes = b"GET", request_headers: bytes = b"Host: x\r\n"
) -> tuple[int, dict, bytes]:
    """
    Send ``target`` (and ``request_headers``) byte for byte (clients would tidy ``..``
    away first); the status, headers (lower-case names) and body.
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            method + b" " + target + b" HTTP/1.1\r\n"
            + request_headers + b"Connection: close\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = dechunked(body)
    return int(status_line.split()[1]), headers, body


def dechunked(body: bytes) -> bytes:
    whole = b""
    while True:
        size, _, body = body.partition(b"\r\n")
        if int(size, 16) == 0:
            return whole
        whole, body = whole + body[: int(size, 16)], body[int(size, 16) + 2 :]


async def fetch(server, target: bytes, method: bytes = b"GET") -> tuple[int, dict, bytes]:
    return await deferToThread(raw_request, server.url, target, method)


def assert_console_headers(headers: dict) -> None:
    for name, value in CONSOLE_HEADERS.items():
        assert headers.get(name) == value, name


def shipped_files() -> dict[str, tuple[bytes, bytes]]:
    return console_files(ROOT / "nanomdm_tw" / "admin")


@pytest_twisted.ensureDeferred
async def test_index_and_every_shipped_file_with_its_headers(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        status, headers, body = await fetch(server, b"/admin/")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert_console_headers(headers)
        assert b"<html" in body
        files = shipped_files()
        assert "index.html" in files
        for name, (content_type, content) in files.items():
            status, headers, body = await fetch(server, b"/admin/" + name.encode())
            assert (status, body) == (200, content), name
            assert headers["content-type"] == content_type.decode()
            assert headers["content-length"] == str(len(content))
            assert_console_headers(headers)


@pytest_twisted.ensureDeferred
async def test_head_answers_headers_only(tmp_path: Path, log_events) -> None:
    async with serve(tmp_path) as server:
        for target in (b"/admin/index.html", b"/admin/nothing.js"):
            _, got, content = await fetch(server, target)
            status, headers, body = await fetch(server, target, b"HEAD")
            assert (status, body) == (_, b"")
            assert headers["content-type"] == got["content-type"]
            assert headers["content-length"] == str(len(content))
            assert_console_headers(headers)
    # Answered as HEAD, not a GET body that twisted.web warns it has to drop.
    assert not [e for e in log_events if "HEAD request" in e.get("log_format", "")]


@pytest_twisted.ensureDeferred
async def test_admin_without_slash_redirects(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        status, headers, _ = await fetch(server, b"/admin")
        assert status == 301
        assert headers["location"] == "/admin/"
        assert_console_headers(headers)
        status, headers, _ = await fetch(server, b"/admin?x=1")
        assert (status, headers["location"]) == (301, "/admin/")


@pytest.mark.parametrize(
    "target",
    [
        b"/admin/../setup.cfg",
        b"/admin/../../../../etc/passwd",
        b"/admin/%2e%2e/setup.cfg",
        b"/admin/%2E%2E%2Fsetup.cfg",
        b"/admin/..%2fresources/admin.py",
        b"/admin//etc/passwd",
        b"/admin/%2fetc%2fpasswd",
        b"/admin/js/",
        b"/admin/js",
        b"/admin/./index.html",
        b"/admin/index.html/",
        b"/admin/nothing.html",
        b"/admin/../openapi.yaml",
        b"/admin/%00index.html",
        b"/admin/%ff",
    ],
)
@pytest_twisted.ensureDeferred
async def test_nothing_but_the_listed_files(tmp_path: Path, target: bytes) -> None:
    async with serve(tmp_path) as server:
        status, headers, body = await fetch(server, target)
        assert (status, body) == (404, b"404 page not found\n")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert_console_headers(headers)


@pytest_twisted.ensureDeferred
async def test_a_request_line_twisted_cannot_parse_is_400(tmp_path: Path) -> None:
    """Not a crash leaving the client with nothing: the headers after it are dropped."""
    async with serve(tmp_path) as server:
        status, headers, body = await fetch(server, b"/admin/\xff")
        assert (status, body) == (400, b"bad request")
        assert headers["connection"] == "close"
        status, _, _ = await fetch(server, b"/admin/")
        assert status == 200


@pytest_twisted.ensureDeferred
async def test_other_methods_refused_with_the_headers(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        status, headers, _ = await fetch(server, b"/admin/", b"POST")
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        assert_console_headers(headers)


@pytest_twisted.ensureDeferred
async def test_absent_without_api_key(tmp_path: Path) -> None:
    ca = DevelopmentCA.create()
    ca.save(tmp_path / "ca")
    async with serve(tmp_path, api_key="", dev=False, ca=str(tmp_path / "ca" / "ca.pem")) as server:
        assert not server.api_key
        for target in (b"/admin/", b"/admin", b"/admin/index.html"):
            status, headers, _ = await fetch(server, target)
            assert status == 404
            assert "content-security-policy" not in headers


@pytest_twisted.ensureDeferred
async def test_absent_when_turned_off(tmp_path: Path) -> None:
    async with serve(tmp_path, admin=False) as server:
        status, _, _ = await fetch(server, b"/admin/")
        assert status == 404
        status, _, _ = await fetch(server, b"/version")
        assert status == 200


def test_mounted_only_with_api_and_admin() -> None:
    def mounted(**settings) -> bool:
        root = build_root(Settings(**settings), MemoryStorage(), None, settings.get("api_key", ""))
        return b"admin" in root.children

    assert mounted(dev=True, api_key="k")
    assert not mounted(dev=True, api_key="k", admin=False)
    assert not mounted(dev=True)


def test_content_types_by_extension(tmp_path: Path) -> None:
    """Known types only; hidden files and anything else stay unserved."""
    (tmp_path / "js" / "pages").mkdir(parents=True)
    for name in ("index.html", "admin.css", "js/main.js", "js/pages/overview.js",
                 "logo.svg", "icon.png", "notes.md", ".hidden.js", "js/main.js.map"):  # fmt: skip
        (tmp_path / name).write_bytes(name.encode())
    files = console_files(tmp_path)
    assert {name: content_type for name, (content_type, _) in files.items()} == {
        "index.html": b"text/html; charset=utf-8",
        "admin.css": b"text/css; charset=utf-8",
        "js/main.js": b"text/javascript; charset=utf-8",
        "js/pages/overview.js": b"text/javascript; charset=utf-8",
        "logo.svg": b"image/svg+xml",
        "icon.png": b"image/png",
    }
    assert files["js/main.js"][1] == b"js/main.js"


def test_installed_package_ships_the_console(tmp_path: Path) -> None:
    """
    setup.cfg's package data: the installed package (as twistd runs it, away
    from this source tree) has every file of the source folder.
    """
    script = (
        "import json, nanomdm_tw\n"
        "from importlib import resources\n"
        "from nanomdm_tw.resources.admin import console_files\n"
        "files = console_files(resources.files('nanomdm_tw') / 'admin')\n"
        "print(json.dumps([nanomdm_tw.__file__, sorted(files)]))\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environ,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    location, names = json.loads(output)
    assert not location.startswith(str(ROOT) + "/nanomdm_tw")
    assert names == sorted(shipped_files())
