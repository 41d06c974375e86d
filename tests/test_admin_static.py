"""
The admin console's files, read as text: nothing in them can turn a device's
words into markup or script, nothing comes from another origin, and every
DOM hook of the contract (ADMIN.md) the browser tests rely on is where the
page that makes it lives.
"""

import re
from pathlib import Path

import pytest

ADMIN = Path(__file__).resolve().parent.parent / "nanomdm_tw" / "admin"
FILES = sorted(p for p in ADMIN.rglob("*") if p.is_file())
TEXT_FILES = [p for p in FILES if p.suffix in (".html", ".css", ".js", ".svg")]
SCRIPTS = [p for p in FILES if p.suffix == ".js"]


def name(path: Path) -> str:
    return path.relative_to(ADMIN).as_posix()


# What would let text become markup, script or an inline style, or talk to the user
# through a browser dialog instead of the page.
FORBIDDEN = {
    "innerHTML": re.compile(r"innerHTML"),
    "outerHTML": re.compile(r"outerHTML"),
    "insertAdjacentHTML": re.compile(r"insertAdjacentHTML"),
    "document.write": re.compile(r"document\s*\.\s*write"),
    "eval": re.compile(r"\beval\s*\("),
    "Function constructor": re.compile(r"\bnew\s+Function\b"),
    "string timer": re.compile(r"set(Timeout|Interval)\s*\(\s*['\"`]"),
    "javascript: URL": re.compile(r"javascript\s*:", re.I),
    "inline event handler": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "event handler property": re.compile(r"\.on[a-z]+\s*=[^=]"),
    "handler attribute": re.compile(r"setAttribute\(\s*['\"`]on", re.I),
    "style element": re.compile(r"<style", re.I),
    "style attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "inline style from script": re.compile(r"\.style\b|cssText"),
    "browser dialog": re.compile(r"\b(alert|confirm|prompt)\s*\("),
    "cookie": re.compile(r"document\s*\.\s*cookie"),
    "localStorage": re.compile(r"localStorage\s*(\.\w|\[)"),
}


@pytest.mark.parametrize("path", TEXT_FILES, ids=name)
def test_no_markup_from_text_no_inline_code(path):
    text = path.read_text("utf-8")
    found = [what for what, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert found == []


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".html"], ids=name)
def test_scripts_are_files_of_our_origin(path):
    text = path.read_text("utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.S | re.I)
    assert scripts, "the page loads its module"
    for attributes, body in scripts:
        assert body.strip() == ""
        assert re.search(r'\ssrc="(?!https?:|//)[^"]+"', attributes)
    assert not re.search(r'(src|href)="(https?:)?//', text)


@pytest.mark.parametrize("path", SCRIPTS, ids=name)
def test_modules_import_only_our_files(path):
    text = path.read_text("utf-8")
    for target in re.findall(r'^import\b[^;]*?from\s+"([^"]+)"', text, re.M | re.S):
        assert target.startswith(("./", "../")), target
        assert (path.parent / target).resolve().is_file(), target
    assert not re.search(r"\bfetch\(\s*['\"`]https?:", text)


def test_every_module_is_used():
    imported = set()
    for path in SCRIPTS:
        for target in re.findall(r'from\s+"([^"]+)"', path.read_text("utf-8")):
            imported.add((path.parent / target).resolve())
    index = (ADMIN / "index.html").read_text("utf-8")
    for source in re.findall(r'<script[^>]*\ssrc="([^"]+)"', index):
        imported.add((ADMIN / source).resolve())
    assert sorted(name(p) for p in SCRIPTS if p.resolve() not in imported) == []


def test_only_servable_files():
    assert sorted(name(p) for p in FILES if p.suffix not in (".html", ".js", ".css", ".svg", ".png")) == []


# The contract's ids, by the file that makes each element.
HOOK_IDS = {
    "index.html": ["nav", "forget-key", "message", "notice", "page"],
    "js/pages/key.js": ["key-form", "api-key"],
    "js/pages/overview.js": [
        "version", "storage", "readiness", "enrollment-counts", "pushes", "webhooks",
        "pushcert-expiry",
    ],
    "js/pages/devices.js": [
        "device-search", "filter-type", "filter-enabled", "filter-topic", "device-filters",
        "devices", "next-page", "device-count",
    ],
    "js/pages/enrollment.js": [
        "facts", "user-channels", "queue", "clear-queue", "clear-queue-confirm", "history", "push",
    ],
    "js/enqueue-form.js": ["enqueue-form", "command-type", "confirm-destructive", "enqueue"],
    "js/pages/command.js": ["fanout", "pending-count"],
    "js/pages/pushcerts.js": ["pushcerts", "pushcert-form", "pushcert-cert", "pushcert-key"],
    "js/pages/profile.js": [
        "profile-form", "profile-topic", "profile-url", "profile-download", "profile-preview",
    ],
}  # fmt: skip


@pytest.mark.parametrize("file", sorted(HOOK_IDS))
def test_hook_ids_are_made_where_their_page_is(file):
    text = (ADMIN / file).read_text("utf-8")
    made = set(re.findall(r'\bid(?:="|: ")([a-z-]+)"', text))
    assert sorted(set(HOOK_IDS[file]) - made) == []


def test_hook_classes_and_names():
    text = {name(p): p.read_text("utf-8") for p in SCRIPTS}
    assert '"delete-command' in text["js/pages/enrollment.js"]
    assert "class: `state status-" in text["js/pages/enrollment.js"]
    assert 'class: `status status-' in text["js/pages/enrollment.js"]
    assert 'class: `status status-' in text["js/pages/command.js"]
    assert "`arg-${argument.key}`" in text["js/enqueue-form.js"]
    for hook in ('class: "result"', 'class: "result-raw"', 'class: "error-chain"'):
        assert hook in text["js/plist.js"], hook
    assert '"data-topic"' in text["js/format.js"]
    assert 'class: "table-wrap"' in text["js/dom.js"]
    assert 'const KEY_NAME = "nanomdm-api-key"' in text["js/api.js"]
    pages = re.search(r"const PAGES = \{([^}]*)\}", text["js/main.js"]).group(1)
    assert sorted(p.strip() for p in pages.split(",")) == sorted(
        ["key", "overview", "devices", "enrollment", "command", "pushcerts", "profile"]
    )


def test_error_texts_of_the_contract():
    api = (ADMIN / "js" / "api.js").read_text("utf-8")
    for said in ("API key was refused", "storage is busy or down", "server did not answer"):
        assert said in api
