"""RootTrading's wire shapes (``../shared/rt-contract``), for the contract tests.

Each file there is one real shape RootTrading produces or expects: a Redis payload
(exact bytes), an HTTP exchange (request and answer), or a database row as psycopg2
returns it. The tests run each through the real code path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CONTRACT", "contract_files", "load_json", "load_raw", "needs_contract"]

# Next to the repository by default; COORDINATOR_CONTRACT_DIR points elsewhere (a clone
# made outside the workspace).
CONTRACT = Path(
    os.environ.get("COORDINATOR_CONTRACT_DIR")
    or Path(__file__).resolve().parents[3] / "shared" / "rt-contract"
)

needs_contract = pytest.mark.skipif(
    not CONTRACT.is_dir(),
    reason=f"RootTrading's contract files are not at {CONTRACT} "
    "(set COORDINATOR_CONTRACT_DIR): nothing to check against",
)


def contract_files(folder: str, pattern: str = "*.json") -> list[Path]:
    """The files of one folder (``signals``, ``trader``...), sorted; none when absent."""
    directory = CONTRACT / folder
    return sorted(directory.glob(pattern)) if directory.is_dir() else []


def load_raw(relative: str) -> bytes:
    """A file's exact bytes (a Redis payload as published)."""
    return (CONTRACT / relative).read_bytes()


def load_json(relative: str) -> Any:
    """A file parsed as JSON."""
    return json.loads(load_raw(relative))
