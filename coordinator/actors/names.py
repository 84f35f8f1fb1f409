"""The names the actors are registered under in the tree: one list, so a typo in a
``tell`` is an attribute error at import, not a message lost to an unknown name."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["VALIDATOR_PREFIX", "ActorName", "validator_name"]


class ActorName(StrEnum):
    """Every singleton actor of the tree; Validators are numbered (`validator_name`)."""

    SERVICE_HEALTH = "service_health"
    STORE_WRITER = "store_writer"
    STATS = "stats"
    MARKET_FEED = "market_feed"
    LEDGER = "ledger"
    UNIVERSE_MANAGER = "universe_manager"
    TRAILING_STOP = "trailing_stop"
    RECONCILER = "reconciler"
    SIGNAL_INTAKE = "signal_intake"


VALIDATOR_PREFIX = "validator-"


def validator_name(index: int) -> str:
    """The name of the ``index``-th Validator (``validator-0``, ``validator-1``, ...)."""
    return f"{VALIDATOR_PREFIX}{index}"
