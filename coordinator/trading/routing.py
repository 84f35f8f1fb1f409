"""Which Validator owns a symbol, and which order a signal can make."""

from __future__ import annotations

import hashlib
import zlib

from coordinator.actors.names import validator_name

__all__ = ["client_order_id", "validator_for"]


def validator_for(symbol: str, count: int) -> str:
    """The Validator that owns ``symbol``: stable across restarts and processes."""
    return validator_name(zlib.crc32(symbol.encode()) % count)


def client_order_id(signal_id: str) -> str:
    """Derived from the signal id: one signal can only ever make this one order."""
    return "coord-" + hashlib.sha256(signal_id.encode()).hexdigest()[:32]
