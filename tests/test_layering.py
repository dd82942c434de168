"""The house rules the import contract (``lint-imports``) cannot state: no module imports a
private name of another package, and no module grows past ~500 lines without saying why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "core",
    "settings",
    "models",
    "sensors",
    "gateway",
    "commune",
    "console",
    "hw_sim",
    "tuquan",
    "testkit",
)
MAX_LINES = 500
# A longer module opens (docstring or leading comment) with this phrase and its reason.
LONG_REASON = "Longer than 500 lines because"


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _package_of(module: str) -> str:
    return module.split(".", 1)[0]


def private_imports(path: Path) -> list[str]:
    """``from other_package.x import _name`` (and ``other_package._x``) in one file."""
    own = path.relative_to(ROOT).parts[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _package_of(node.module) not in PACKAGES or _package_of(node.module) == own:
                continue
            private_parts = [p for p in node.module.split(".") if p.startswith("_")]
            private_names = [
                a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")
            ]
            for name in private_parts + private_names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module} {name}")
    return found


def test_no_module_imports_a_private_name_of_another_package() -> None:
    found = [hit for path in _modules() for hit in private_imports(path)]
    assert found == []


def test_the_private_name_check_sees_one(tmp_path: Path) -> None:
    # The check above must be able to fail: a file importing another package's private name.
    fake = ROOT / "commune" / "_layering_probe.py"
    fake.write_text("from settings import _Hidden\nfrom core.errors import ConfigError\n")
    try:
        assert private_imports(fake) == ["commune/_layering_probe.py:1 settings _Hidden"]
    finally:
        fake.unlink()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_long_module_says_why(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if text.count("\n") <= MAX_LINES:
        return
    head = "\n".join(text.splitlines()[:40])
    assert LONG_REASON in head, f"{path.relative_to(ROOT)} has {text.count(chr(10))} lines"
