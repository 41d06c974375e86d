"""docs/operations-guide.md stays true: every flag and every endpoint the server has is in it."""

import re
from pathlib import Path

import pytest
import pytest_twisted

from nanomdm_tw.cli import REPEATABLE
from nanomdm_tw.tap import Options

from .serving import serve

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operations-guide.md"
# Flags without a variable of their own.
NO_VARIABLE = {"version"}


def flag_names() -> list[str]:
    """Every flag of ``twistd nanomdm`` (and so of ``nanomdm-tw``), aliases included."""
    names = [name for name, *_ in Options.optParameters]
    names += [name for name, *_ in Options.optFlags]
    names += [attr[4:].replace("_", "-") for attr in dir(Options) if attr.startswith("opt_")]
    names += list(REPEATABLE)
    return sorted(set(names) - {"help"})


def variable(flag: str) -> str:
    """The variable a flag reads: its own, or the one of the flag it stands for."""
    return "NANOMDM_" + REPEATABLE.get(flag, flag).upper().replace("-", "_")


def guide_rows() -> dict[str, str]:
    """Table rows of the guide by the flag they start with."""
    rows = {}
    for line in GUIDE.read_text().splitlines():
        match = re.match(r"\| `--([a-z0-9-]+)", line)
        if match:
            rows[match.group(1)] = line
    return rows


@pytest.mark.parametrize("flag", flag_names())
def test_every_flag_has_a_row_with_its_variable(flag: str) -> None:
    row = guide_rows().get(flag)
    assert row is not None, f"--{flag} is missing from {GUIDE.name}'s settings tables"
    cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip("|"))]
    assert len(cells) == 4, f"--{flag}: flag | environment | default | meaning"
    assert cells[3], f"--{flag} has no meaning"
    if flag not in NO_VARIABLE:
        assert cells[1] == f"`{variable(flag)}`"


def test_the_guide_describes_no_flag_that_does_not_exist() -> None:
    assert set(guide_rows()) <= set(flag_names())


def served_paths(resource, prefix: str = "") -> list[str]:
    """The static paths of a resource tree, through the API's guard."""
    resource = getattr(resource, "_protected", resource)
    paths = []
    for name, child in getattr(resource, "children", {}).items():
        path = prefix + "/" + name.decode()
        paths.append(path)
        paths.extend(served_paths(child, path))
    return paths


@pytest_twisted.ensureDeferred
async def test_every_endpoint_is_in_the_guide(tmp_path: Path) -> None:
    async with serve(tmp_path, migration=True, checkin=True) as server:
        paths = served_paths(server.service.port.factory.resource)
    guide = GUIDE.read_text()

    assert {"/v1/enqueue", "/migration", "/checkin", "/metrics"} <= set(paths)
    missing = [path for path in paths if not re.search(re.escape(path) + r"\b", guide)]
    assert missing == []


def test_the_readme_links_the_guide() -> None:
    assert "(docs/operations-guide.md)" in (ROOT / "README.md").read_text()


@pytest_twisted.ensureDeferred
async def test_every_metric_the_server_exports_is_in_the_guide(tmp_path: Path) -> None:
    async with serve(tmp_path) as server:
        answer = await server.http.get(server.url + "/metrics")
        text = (await answer.content()).decode()
    # prometheus_client also types each counter's creation time (_created): no metric of ours.
    names = {
        name
        for name in re.findall(r"^# TYPE (nanomdm_\w+)", text, re.MULTILINE)
        if not name.endswith("_created")
    }
    guide = GUIDE.read_text()

    assert "nanomdm_http_requests_total" in names
    assert sorted(name for name in names if f"`{name}" not in guide) == []
