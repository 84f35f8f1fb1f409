"""Where the shared Binance candles are, for the tests that replay them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Next to the repository by default; COORDINATOR_CANDLES_DIR points elsewhere (a clone
# made outside the workspace).
CANDLES = Path(
    os.environ.get("COORDINATOR_CANDLES_DIR")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "candles"
)

needs_candles = pytest.mark.skipif(
    not CANDLES.is_dir(),
    reason=f"the shared candles are not at {CANDLES} (set COORDINATOR_CANDLES_DIR): "
    "nothing to replay",
)
