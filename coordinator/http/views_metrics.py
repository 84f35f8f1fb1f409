"""The Prometheus metrics: metric families built at scrape time from the actors'
snapshots (no counter of its own is kept here, so that a restarted HTTP layer or a second
coordinator in the process shows exactly what the actors hold)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import StrEnum

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from coordinator.http.facade_metrics import MetricsInputs
from coordinator.messages.health import DependencySnapshot, HealthSnapshot
from coordinator.messages.stats import StatsSnapshot
from coordinator.messages.supervision import SupervisorSnapshot
from coordinator.trading.breaker import BreakerPhase
from coordinator.trading.metrics import BucketCounts
from coordinator.trading.trading_state import DependencyStatus, TradingState

__all__ = ["SnapshotCollector", "metric_families", "metrics_registry"]

PREFIX = "coordinator_"


class SnapshotCollector(Collector):
    """Builds every family from fresh snapshots at each scrape."""

    def __init__(self, inputs: Callable[[], MetricsInputs]) -> None:
        self._inputs = inputs

    def collect(self) -> Iterable[Metric]:
        return list(metric_families(self._inputs()))

    def describe(self) -> Iterable[Metric]:
        # Nothing at registration: describing would ask the actors.
        return ()


def metrics_registry(inputs: Callable[[], MetricsInputs]) -> CollectorRegistry:
    """A registry of its own: several coordinators may run in one process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(inputs))
    return registry


def metric_families(inputs: MetricsInputs) -> Iterator[Metric]:
    yield _labeled(
        GaugeMetricFamily,
        "up",
        "1 when the actor answered this scrape, 0 when not",
        ["actor"],
        [([actor], answered) for actor, answered in inputs.answered],
    )
    about = inputs.about
    yield GaugeMetricFamily(
        PREFIX + "uptime_seconds", "Seconds since the coordinator started", value=about.uptime
    )
    yield GaugeMetricFamily(
        PREFIX + "paper_mode", "1 when orders go to the paper exchange", value=float(about.paper)
    )
    if inputs.tree is not None:
        yield from _actors(inputs.tree)
    if inputs.health is not None:
        yield from _health(inputs.health)
    if inputs.stats is not None:
        yield from _stats(inputs.stats)
    if inputs.intake is not None:
        intake = inputs.intake
        yield _counter("signals_received", "Signals read or posted", intake.received)
        yield _counter("signals_duplicate", "Signals dropped as already seen", intake.duplicates)
        yield _gauge("signals_in_flight", "Signals admitted and not decided yet", intake.in_flight)
    if inputs.store is not None:
        store = inputs.store
        yield _gauge(
            "store_journal_depth",
            "Records kept in the local journal until PostgreSQL takes them",
            store.journaled,
        )
        yield _gauge("store_pending", "Records waiting for the next write", store.pending)
        yield _gauge("store_postgres_ok", "1 when the last write went through", store.postgres_ok)
        yield _gauge("orders_unknown", "Orders whose outcome is unknown", len(store.unknown_orders))
    if inputs.universe is not None:
        universe = inputs.universe
        yield _gauge("universe_size", "Symbols selected for trading", len(universe.selected))
        yield _gauge("blacklist_size", "Symbols blacklisted", len(universe.blacklisted))
    if inputs.stops is not None:
        stops = inputs.stops
        yield _gauge("positions_watched", "Positions the trailing stops watch", stops.active)
        yield _gauge(
            "stops_stale",
            "Watched positions whose latest price is missing or too old",
            stops.stale,
        )
        yield _counter(
            "stale_ticks_ignored", "Price ticks too old for the stops", stops.stale_ticks_ignored
        )
    if inputs.ledger is not None:
        ledger = inputs.ledger
        yield _gauge("positions_open", "Positions the Ledger holds", len(ledger.positions))
        yield _gauge("reservations_open", "Reservations held for orders", ledger.reservations)
        yield _gauge(
            "cash_held_back",
            "Quote held back from BUYs: what the last Portfolio view may count beyond the "
            "exchange's cash",
            ledger.cash_held_back,
        )
        yield _labeled(
            GaugeMetricFamily,
            "base_held_back",
            "Base held back from SELLs: what our SELLs the last Portfolio view may not show "
            "yet may count beyond the exchange's holdings",
            ["asset"],
            [([asset], amount) for asset, amount in sorted(ledger.base_held_back.items())],
        )
    yield _labeled(
        GaugeMetricFamily,
        "validator_waiting",
        "Signals waiting in a Validator's queue for a price or a dependency",
        ["validator"],
        [([v.name], v.waiting) for v in inputs.validators],
    )


def _actors(tree: SupervisorSnapshot) -> Iterator[Metric]:
    children = tree.children
    yield _counted(
        "actor_restarts",
        "Restarts of the actor by its supervisor",
        ["actor"],
        [([c.name], c.restarts) for c in children],
    )
    yield _counted(
        "actor_errors",
        "Errors the actor handled without a restart",
        ["actor"],
        [([c.name], c.errors) for c in children],
    )
    yield _labeled(
        GaugeMetricFamily,
        "actor_mailbox_depth",
        "Messages waiting in the actor's inbox (or kept while it is down)",
        ["actor"],
        [([c.name], c.mailbox_depth) for c in children],
    )


def _health(health: HealthSnapshot) -> Iterator[Metric]:
    yield _one_of(
        "trading_state",
        "1 for the current trading state, 0 for the others",
        ["state"],
        [([state], state is health.trading.state) for state in TradingState],
    )
    if health.halted is not None:
        yield _gauge("kill_switch_halted", "1 when the operator halted trading", health.halted)
    dependencies = health.dependencies
    yield _one_of(
        "breaker_state",
        "1 for the current state of the dependency's circuit breaker, 0 for the others",
        ["dependency", "state"],
        _each_dependency(dependencies, BreakerPhase, lambda dep: dep.breaker),
    )
    yield _one_of(
        "dependency_status",
        "1 for the dependency's current status, 0 for the others",
        ["dependency", "status"],
        _each_dependency(dependencies, DependencyStatus, lambda dep: dep.status),
    )
    yield _labeled(
        GaugeMetricFamily,
        "dependency_consecutive_failures",
        "Failed probes of the dependency in a row",
        ["dependency"],
        [([dep.dependency], dep.consecutive_failures) for dep in dependencies],
    )


def _each_dependency(
    dependencies: Iterable[DependencySnapshot],
    states: Iterable[StrEnum],
    current: Callable[[DependencySnapshot], StrEnum],
) -> list[tuple[Sequence[str], bool]]:
    """(dependency, state) for every state of every dependency, True for its current one."""
    return [
        ([dep.dependency, state], state is current(dep)) for dep in dependencies for state in states
    ]


def _stats(stats: StatsSnapshot) -> Iterator[Metric]:
    yield _counted(
        "signals",
        "Signals decided, by where they came from and the outcome",
        ["source", "outcome"],
        [([source, outcome], count) for source, outcome, count in stats.signals_by_source],
    )
    yield _by_one(
        "rejections", "Signals not accepted, by reason code", "reason", stats.rejections_by_reason
    )
    yield _by_one("orders", "Order attempts finished, by state", "state", stats.orders_by_state)
    yield _by_one(
        "stop_exits", "Exits of the trailing stops decided, by outcome", "outcome", stats.stop_exits
    )
    yield _counter(
        "reservations_expired",
        "Reservations that ran out without an order",
        stats.reservations_expired,
    )
    yield _histogram(
        "intake_to_decision_seconds",
        "Time from a signal's intake to its decision",
        stats.intake_to_decision_buckets,
    )
    yield _histogram(
        "intake_to_order_seconds",
        "Time from a signal's intake to its order's answer",
        stats.intake_to_order_buckets,
    )
    yield _histogram(
        "tick_to_exit_order_seconds",
        "Time from the price tick that hit a stop to its exit order's answer",
        stats.tick_to_exit_order_buckets,
    )


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(PREFIX + name, documentation, value=float(value))


def _counted(
    name: str, documentation: str, labels: list[str], rows: Iterable[tuple[Sequence[str], float]]
) -> Metric:
    return _labeled(CounterMetricFamily, name, documentation, labels, rows)


def _by_one(name: str, documentation: str, label: str, counts: Iterable[tuple[str, int]]) -> Metric:
    """A counter from (label value, count) pairs."""
    return _counted(name, documentation, [label], [([key], count) for key, count in counts])


def _one_of(
    name: str, documentation: str, labels: list[str], rows: Iterable[tuple[Sequence[str], bool]]
) -> Metric:
    """A gauge per label set, 1 for the current one(s) and 0 for the others."""
    return _labeled(GaugeMetricFamily, name, documentation, labels, rows)


def _labeled(
    kind: type[CounterMetricFamily | GaugeMetricFamily],
    name: str,
    documentation: str,
    labels: list[str],
    rows: Iterable[tuple[Sequence[str], float]],
) -> Metric:
    family = kind(PREFIX + name, documentation, labels=labels)
    for values, number in rows:
        family.add_metric([str(v) for v in values], float(number))
    return family


def _histogram(name: str, documentation: str, counts: BucketCounts) -> Metric:
    # The last cumulative count is the +Inf bucket's.
    finite = zip(counts.bounds_s, counts.cumulative[:-1], strict=True)
    buckets = [*((_bound(bound), float(n)) for bound, n in finite), ("+Inf", float(counts.count))]
    return HistogramMetricFamily(
        PREFIX + name, documentation, buckets=buckets, sum_value=counts.sum_s
    )


def _bound(bound: float) -> str:
    return repr(float(bound))
