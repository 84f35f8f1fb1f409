"""Which Validator owns a symbol, and which order a signal can make."""

from __future__ import annotations

import functools
import hashlib
import zlib

__all__ = ["VALIDATOR_PREFIX", "client_order_id", "validator_for", "validator_name"]

VALIDATOR_PREFIX = "validator-"


def validator_name(index: int) -> str:
    """The name of the ``index``-th Validator (``validator-0``, ``validator-1``, ...)."""
    return f"{VALIDATOR_PREFIX}{index}"


def validator_for(symbol: str, count: int) -> str:
    """The Validator that owns ``symbol``: stable across restarts and processes."""
    return validator_name(zlib.crc32(symbol.encode()) % count)


@functools.lru_cache(maxsize=4_096)
def client_order_id(signal_id: str) -> str:
    """Derived from the signal id: one signal can only ever make this one order. Kept
    for the newest signals: the Validator asks for it two or three times per signal,
    a SHA-256 each."""
    return "coord-" + hashlib.sha256(signal_id.encode()).hexdigest()[:32]
