"""Stats: counts and latencies of decisions and orders, since start and over all time."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from coordinator.infra.pipeline_store import PipelineStore
from coordinator.infra.store import StoreError
from coordinator.messages.pipeline import (
    GetStats,
    LifetimeFetched,
    OrderFinished,
    RefreshLifetime,
    ReservationsExpired,
    SignalDecided,
    StatsSnapshot,
)
from coordinator.messages.stats import GetStatsHistory, StatsHistory
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.trading.execution import OrderStatus
from coordinator.trading.history import MinuteHistory
from coordinator.trading.metrics import LatencyHistogram
from coordinator.trading.signals import SignalSource
from coordinator.trading.validation import Outcome, Reason

__all__ = ["Stats"]

logger = logging.getLogger(__name__)

_LIFETIME_EVERY = 30.0


def _not_read(exc: Exception) -> None:
    logger.warning("lifetime statistics not read: %s", exc)


class Stats(ChildActor):
    subscriptions = (SignalDecided, OrderFinished, ReservationsExpired)

    def setup(self) -> None:
        services: Services = self.context.services
        self._outcomes: Counter[str] = Counter()
        self._by_source: Counter[tuple[str, str]] = Counter()
        self._reasons: Counter[str] = Counter()
        self._validated = 0
        self._orders: Counter[str] = Counter()
        self._to_decision = LatencyHistogram()
        self._to_order = LatencyHistogram()
        self._exits: Counter[str] = Counter()
        self._tick_to_exit = LatencyHistogram()
        self._lifetime: Mapping[str, Any] | None = None
        self._reservations_expired = 0
        self._history = MinuteHistory()
        self._store = PipelineStore(services.endpoints.database_dsn, timeout=10.0)
        worker = self.worker_pool("lifetime", finish_queued=True)
        self.on_cleanup(lambda: worker.submit(self._store.close), what="store")
        self.ticker(_LIFETIME_EVERY, RefreshLifetime, immediately=True)

    def handle(self, message: Any) -> Any:
        match message:
            case SignalDecided(decision=decision, source=SignalSource.TRAILING_STOP):
                # Exits of the trailing stops are not signals: counted on their own.
                self._exits[decision.outcome] += 1
                if decision.intake_to_order_ms is not None:
                    self._tick_to_exit.add(decision.intake_to_order_ms)
            case SignalDecided(decision=decision, source=source):
                self._outcomes[decision.outcome] += 1
                self._by_source[(str(source), decision.outcome)] += 1
                if decision.reason:
                    self._reasons[decision.reason] += 1
                failure = next((c for c in decision.checks if not c.passed), None)
                if failure is None or failure.step == "execution":
                    self._validated += 1
                self._to_decision.add(decision.intake_to_decision_ms)
                self._history.decided(
                    self.context.clock.time(),
                    outcome=decision.outcome,
                    reason=decision.reason,
                    latency_ms=decision.intake_to_decision_ms,
                )
                if decision.intake_to_order_ms is not None:
                    self._to_order.add(decision.intake_to_order_ms)
            case OrderFinished(order=order):
                self._orders[order.state] += 1
                self._history.order_finished(self.context.clock.time())
            case ReservationsExpired(count=count):
                self._reservations_expired += count
            case RefreshLifetime():
                self.run_then_tell(
                    self._store.lifetime,
                    lambda totals: LifetimeFetched(totals=totals),
                    on_error=_not_read,
                    errors=(StoreError,),
                    pool="lifetime",
                )
            case LifetimeFetched(totals=totals):
                self._lifetime = totals
            case GetStats():
                return self._snapshot()
            case GetStatsHistory():
                now = self.context.clock.time()
                return StatsHistory(now=now, minutes=self._history.minutes(now))
            case _:
                return NOT_HANDLED
        return None

    def _snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            signals_processed=sum(self._outcomes.values()),
            signals_accepted=self._outcomes[Outcome.ACCEPTED],
            signals_rejected=self._outcomes[Outcome.REJECTED],
            signals_shadow=self._outcomes[Outcome.SHADOW],
            signals_unknown=self._outcomes[Outcome.UNKNOWN],
            signals_validated=self._validated,
            orders_accepted=self._orders[OrderStatus.ACCEPTED],
            orders_rejected=self._orders[OrderStatus.REJECTED],
            orders_unknown=self._orders[OrderStatus.UNKNOWN],
            internal_errors=self._reasons[Reason.INTERNAL_ERROR],
            rejections_by_reason=tuple(self._reasons.most_common()),
            intake_to_decision=self._to_decision.summary(),
            intake_to_order=self._to_order.summary(),
            tick_to_exit_order=self._tick_to_exit.summary(),
            stop_exits=tuple(self._exits.items()),
            reservations_expired=self._reservations_expired,
            lifetime=self._lifetime,
            signals_by_source=tuple(
                (source, outcome, count) for (source, outcome), count in self._by_source.items()
            ),
            orders_by_state=tuple(self._orders.items()),
            intake_to_decision_buckets=self._to_decision.buckets(),
            intake_to_order_buckets=self._to_order.buckets(),
            tick_to_exit_order_buckets=self._tick_to_exit.buckets(),
        )
