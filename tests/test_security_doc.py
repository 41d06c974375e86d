"""docs/security.md stays true: every test it names as a claim's backing exists."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"tests/([\w/]+\.py)::(\w+)")


def references() -> list[tuple[str, str]]:
    return REFERENCE.findall(DOC.read_text())


def functions_of(path: Path) -> set[str]:
    """Names of the module-level test functions (sync or async) of a test file."""
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def test_the_doc_names_tests() -> None:
    assert len(references()) >= 50


def test_every_named_test_exists() -> None:
    missing = []
    found: dict[str, set[str]] = {}
    for file, name in references():
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(f"tests/{file} (no such file)")
            continue
        if file not in found:
            found[file] = functions_of(path)
        if name not in found[file]:
            missing.append(f"tests/{file}::{name}")
    assert not missing, "docs/security.md names tests that do not exist: " + ", ".join(missing)


def test_a_missing_test_would_be_caught(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text("def test_a():\n    pass\n\nasync def test_b():\n    pass\n\ndef helper():\n    pass\n")
    assert functions_of(module) == {"test_a", "test_b"}
    assert REFERENCE.findall("see `tests/test_x.py::test_gone`") == [("test_x.py", "test_gone")]
