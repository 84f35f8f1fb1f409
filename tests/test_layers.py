"""The layering holds: the pure trading and cluster rules depend on nothing that does
I/O."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "coordinator"
# What trading/ may import from the package: itself, and the plain values it is handed.
# The fencing token too: an exit names the lease it was asked under (a pure value).
TRADING_MAY_USE = (
    "coordinator.trading",
    "coordinator.clock",
    "coordinator.errors",
    "coordinator.cluster.fencing",
)
# cluster/ (who leads) is as pure, and needs none of the trading rules either.
CLUSTER_MAY_USE = ("coordinator.cluster", "coordinator.clock", "coordinator.errors")


def _all_imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _imported(path: Path) -> set[str]:
    return {
        name
        for name in _all_imported(path)
        if name == "coordinator" or name.startswith("coordinator.")
    }


def _wrong_imports(package: str, may_use: tuple[str, ...]) -> set[str]:
    return {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in _imported(path)
        if not any(name == ok or name.startswith(ok + ".") for ok in may_use)
    }


def test_trading_imports_nothing_of_the_actors_or_the_io():
    wrong = _wrong_imports("trading", TRADING_MAY_USE)
    assert not wrong, f"trading/ must not depend on these: {sorted(wrong)}"


def test_cluster_imports_nothing_of_the_actors_or_the_io():
    wrong = _wrong_imports("cluster", CLUSTER_MAY_USE)
    assert not wrong, f"cluster/ must not depend on these: {sorted(wrong)}"


def test_cluster_and_trading_import_no_io_library():
    io = ("psycopg2", "redis", "requests", "urllib3", "pykka", "bottle", "waitress", "socket")
    wrong = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for package in ("cluster", "trading")
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in _all_imported(path)
        if name.split(".")[0] in io
    }
    assert not wrong, f"pure packages must not import these: {sorted(wrong)}"
