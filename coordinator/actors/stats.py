"""Stats: counts and latencies of decisions and orders, since start and over all time."""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from typing import Any

from pykka import ActorDeadError

from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import (
    GetStats,
    LifetimeFetched,
    OrderSubmitted,
    RefreshLifetime,
    ReservationsExpired,
    SignalDecided,
    StatsSnapshot,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.ticker import Ticker
from coordinator.trading.metrics import LatencyHistogram

__all__ = ["Stats"]

logger = logging.getLogger(__name__)

_LIFETIME_EVERY = 30.0


class Stats(ChildActor):
    subscriptions = (SignalDecided, OrderSubmitted, ReservationsExpired)

    def setup(self) -> None:
        services: Services = self.context.services
        self._outcomes: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self._validated = 0
        self._orders: Counter[str] = Counter()
        self._to_decision = LatencyHistogram()
        self._to_order = LatencyHistogram()
        self._exits: Counter[str] = Counter()
        self._tick_to_exit = LatencyHistogram()
        self._lifetime = "null"
        self._reservations_expired = 0
        self._store = PipelineStore(services.endpoints.database_dsn, timeout=10.0)
        self._worker = self.worker_pool("lifetime")
        self._ticker = Ticker(
            _LIFETIME_EVERY,
            lambda: self.actor_ref.tell(RefreshLifetime()),
            name=f"{self.name}-ticker",
            clock=self.context.clock,
        ).start(immediately=True)

    def cleanup(self) -> None:
        if getattr(self, "_ticker", None) is not None:
            self._ticker.stop()
        if getattr(self, "_worker", None) is not None:
            self._worker.submit(self._store.close)
            self._worker.shutdown(wait=False)

    def handle(self, message: Any) -> Any:
        match message:
            case SignalDecided(decision=decision, source="trailing_stop"):
                # Exits of the trailing stops are not signals: counted on their own.
                self._exits[decision.outcome] += 1
                if decision.intake_to_order_ms is not None:
                    self._tick_to_exit.add(decision.intake_to_order_ms)
            case SignalDecided(decision=decision):
                self._outcomes[decision.outcome] += 1
                if decision.reason:
                    self._reasons[decision.reason] += 1
                failure = next((c for c in decision.checks if not c.passed), None)
                if failure is None or failure.step == "execution":
                    self._validated += 1
                self._to_decision.add(decision.intake_to_decision_ms)
                if decision.intake_to_order_ms is not None:
                    self._to_order.add(decision.intake_to_order_ms)
            case OrderSubmitted(order=order):
                self._orders[order.state] += 1
            case ReservationsExpired(count=count):
                self._reservations_expired += count
            case RefreshLifetime():
                self._worker.submit(self._read_lifetime)
            case LifetimeFetched(json=text):
                self._lifetime = text
            case GetStats():
                return self._snapshot()
            case _:
                return NOT_HANDLED
        return None

    def _read_lifetime(self) -> None:
        try:
            text = json.dumps(self._store.lifetime())
        except StoreError as exc:
            logger.warning("lifetime statistics not read: %s", exc)
            return
        with contextlib.suppress(ActorDeadError):
            self.actor_ref.tell(LifetimeFetched(json=text))

    def _snapshot(self) -> StatsSnapshot:
        processed = sum(self._outcomes.values())
        since_start = {
            "signals_processed": processed,
            "signals_accepted": self._outcomes["accepted"],
            "signals_rejected": self._outcomes["rejected"],
            "signals_shadow": self._outcomes["shadow"],
            "signals_unknown": self._outcomes["unknown"],
            "signals_validated": self._validated,
            "validation_success_rate": round(self._validated / processed, 6) if processed else None,
            "orders_sent": self._orders["accepted"] + self._orders["unknown"],
            "orders_accepted": self._orders["accepted"],
            "orders_rejected": self._orders["rejected"],
            "orders_unknown": self._orders["unknown"],
            "errors": self._reasons["internal_error"],
            "rejections_by_reason": dict(self._reasons.most_common()),
            "latency_ms": {
                "intake_to_decision": self._to_decision.summary(),
                "intake_to_order": self._to_order.summary(),
                "tick_to_exit_order": self._tick_to_exit.summary(),
            },
            "stop_exits": dict(self._exits),
            "reservations_expired": self._reservations_expired,
        }
        return StatsSnapshot(since_start=json.dumps(since_start), lifetime=self._lifetime)
