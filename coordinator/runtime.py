"""What every actor of one coordinator process shares: config, addresses, start time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator import __version__
from coordinator.clock import Clock
from coordinator.config import Config

__all__ = ["Endpoints", "Services"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the dependencies are, once embedded servers are up (secrets included)."""

    redis_url: str
    database_dsn: str
    trader_url: str | None
    """None: not configured."""
    portfolio_url: str | None
    """None: not configured."""
    redis_embedded: bool = False
    database_embedded: bool = False


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    endpoints: Endpoints
    clock: Clock
    started_at: float
    """Wall-clock start of the process, epoch seconds."""
    started_monotonic: float
    version: str = __version__
    journal: Any = None
    """The local write-ahead journal (coordinator.infra.journal.Journal)."""
    intents: Any = None
    """The order-intent gate (coordinator.infra.pipeline_store.IntentClaims)."""
    paper_exchange: bool = False
    """Whether Trader and Portfolio are the in-process paper exchange."""

    def uptime(self) -> float:
        return self.clock.monotonic() - self.started_monotonic
