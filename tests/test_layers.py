"""The layering holds: the pure trading rules depend on nothing that does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "coordinator"
# What trading/ may import from the package: itself, and the plain values it is handed.
TRADING_MAY_USE = ("coordinator.trading", "coordinator.clock", "coordinator.errors")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "coordinator" or name.startswith("coordinator.")}


def test_trading_imports_nothing_of_the_actors_or_the_io():
    wrong = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted((PACKAGE / "trading").rglob("*.py"))
        for name in _imported(path)
        if not any(name == ok or name.startswith(ok + ".") for ok in TRADING_MAY_USE)
    }
    assert not wrong, f"trading/ must not depend on these: {sorted(wrong)}"
