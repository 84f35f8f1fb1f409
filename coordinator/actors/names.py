"""The names the actors are registered under in the tree: one list, so a typo in a
``tell`` is an attribute error at import, not a message lost to an unknown name."""

from __future__ import annotations

from enum import StrEnum

from coordinator.trading.routing import VALIDATOR_PREFIX, validator_name

__all__ = ["VALIDATOR_PREFIX", "ActorName", "validator_name"]


class ActorName(StrEnum):
    """Every singleton actor of the tree; Validators are numbered (`validator_name`)."""

    INSTANCE_KEEPER = "instance_keeper"
    SERVICE_HEALTH = "service_health"
    STORE_WRITER = "store_writer"
    STATS = "stats"
    MARKET_FEED = "market_feed"
    LEDGER = "ledger"
    UNIVERSE_MANAGER = "universe_manager"
    TRAILING_STOP = "trailing_stop"
    RECONCILER = "reconciler"
    PARTITION_KEEPER = "partition_keeper"
    SIGNAL_INTAKE = "signal_intake"
    LEADER_ELECTOR = "leader_elector"
