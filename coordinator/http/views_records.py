"""Views of the pipeline's counts, the universe, the stops and the orders: pure functions
from the actors' typed snapshots to the JSON-able bodies of the routes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from coordinator.clock import utc_iso
from coordinator.http.views import About, reconciler_view
from coordinator.messages.ledger import LedgerSnapshot
from coordinator.messages.pipeline import IntakeSnapshot, MarketSnapshot, OrderRecord, StoreSnapshot
from coordinator.messages.reconcile import ReconcilerSnapshot
from coordinator.messages.stats import StatsHistory, StatsSnapshot
from coordinator.messages.stops import TrailingStopsSnapshot
from coordinator.messages.universe import UniverseSnapshot

__all__ = [
    "plain",
    "rows_view",
    "since_start_view",
    "stats_history_view",
    "stats_view",
    "trailing_stops_view",
    "universe_view",
    "unknown_orders_view",
]


def plain(value: Any) -> Any:
    """``value`` as JSON would give it back: what is not a JSON value (a timestamp or a
    decimal from the database, a numpy number) becomes its text."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


def _key(key: Any) -> Any:
    # JSON object keys are text: numbers and booleans are written as JSON writes them.
    if key is True or key is False:
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        return "NaN" if math.isnan(key) else float.__repr__(key)
    if isinstance(key, int):
        return int.__repr__(key)
    return key


def since_start_view(stats: StatsSnapshot) -> dict[str, Any]:
    processed = stats.signals_processed
    return {
        "signals_processed": processed,
        "signals_accepted": stats.signals_accepted,
        "signals_rejected": stats.signals_rejected,
        "signals_shadow": stats.signals_shadow,
        "signals_unknown": stats.signals_unknown,
        "signals_validated": stats.signals_validated,
        "validation_success_rate": (
            round(stats.signals_validated / processed, 6) if processed else None
        ),
        "orders_sent": stats.orders_accepted + stats.orders_unknown,
        "orders_accepted": stats.orders_accepted,
        "orders_rejected": stats.orders_rejected,
        "orders_unknown": stats.orders_unknown,
        "errors": stats.internal_errors,
        "rejections_by_reason": dict(stats.rejections_by_reason),
        "latency_ms": {
            "intake_to_decision": dict(stats.intake_to_decision),
            "intake_to_order": dict(stats.intake_to_order),
            "tick_to_exit_order": dict(stats.tick_to_exit_order),
        },
        "stop_exits": dict(stats.stop_exits),
        "reservations_expired": stats.reservations_expired,
    }


def stats_view(
    about: About,
    *,
    intake: IntakeSnapshot,
    stats: StatsSnapshot,
    store: StoreSnapshot,
    actor_errors: int,
    ledger: LedgerSnapshot | None,
    universe: UniverseSnapshot | None,
    stops: TrailingStopsSnapshot | None,
    market: MarketSnapshot | None,
) -> dict[str, Any]:
    """``None`` for an actor that did not answer: its counts show as null."""
    since = since_start_view(stats)
    return {
        "timestamp": about.timestamp,
        "uptime": about.uptime_s,
        "signals_received": intake.received,
        "signals_processed": since["signals_processed"],
        "signals_rejected": since["signals_rejected"],
        "orders_sent": since["orders_sent"],
        "errors": since["errors"] + actor_errors,
        "signals_validated": since["signals_validated"],
        "validation_success_rate": since["validation_success_rate"],
        "active_positions": None if ledger is None else len(ledger.positions),
        "universe_size": None if universe is None else len(universe.selected),
        "trailing_stops_active": None if stops is None else stops.active,
        "signals_in_flight": intake.in_flight,
        "duplicates": intake.duplicates,
        "resent_after_restart": intake.resent,
        "orders_unknown": len(store.unknown_orders),
        "reservations_open": None if ledger is None else ledger.reservations,
        "reservations_expired": since["reservations_expired"],
        "cash_held_back": None if ledger is None else round(ledger.cash_held_back, 8),
        "base_held_back": None
        if ledger is None
        else {asset: round(amount, 8) for asset, amount in sorted(ledger.base_held_back.items())},
        "store": {
            "postgres_ok": store.postgres_ok,
            "pending": store.pending,
            "journaled": store.journaled,
            "last_error": store.last_error,
        },
        "market_data": None
        if market is None
        else {
            "connected": market.connected,
            "read": market.read,
            "duplicates": market.duplicates,
            "stale": market.stale,
            "malformed": dict(market.malformed),
        },
        "rejections_by_reason": since["rejections_by_reason"],
        "latency_ms": since["latency_ms"],
        "since_start": since,
        "lifetime": plain(stats.lifetime),
    }


def universe_view(universe: UniverseSnapshot) -> dict[str, Any]:
    members = {s for s, _ in universe.members}
    verdicts = plain(universe.verdicts)
    return plain(
        {
            "selected_symbols": sorted(members),
            "selected_count": len(members),
            "core_pairs": sorted(universe.core_pairs),
            "last_update": None if universe.last_at is None else utc_iso(universe.last_at),
            "next_update": utc_iso(universe.next_at),
            "last_reason": universe.last_reason,
            "scores": universe.scores,
            # Every candidate's verdict, members included: a member that failed a filter
            # stays until its misses run out, and the reason shows here meanwhile.
            "verdicts": verdicts,
            "excluded": {s: v for s, v in verdicts.items() if s not in members},
            "members": {
                s: {"since": utc_iso(m.since), "misses": m.misses, "score": m.score}
                for s, m in universe.members
            },
            "waiting": universe.waiting,
            "draining": sorted(universe.draining),
            "blacklist": [
                {
                    "symbol": e.symbol,
                    "reason": e.reason,
                    "source": e.source,
                    "added_at": utc_iso(e.added_at),
                    "expires_at": None if e.expires_at is None else utc_iso(e.expires_at),
                }
                for e in universe.blacklisted
            ],
            "last_diff": {
                "added": universe.added,
                "removed": universe.removed,
                "reasons": universe.reasons,
            },
            "last_rotation_ms": universe.rotation_ms,
            "filters": universe.filters,
            "symbols_with_data": universe.symbols_with_data,
            "performance": universe.performance,
        }
    )


def trailing_stops_view(stops: TrailingStopsSnapshot) -> dict[str, Any]:
    rows = plain(stops.positions)
    return plain(
        {
            "positions": rows,
            "count": len(rows),
            "awaiting_orders": sum(1 for r in rows if r["waiting_on_order"]),
            "rules": {
                "default": stops.default_rules,
                "by_symbol": dict(stops.rules_by_symbol),
                "described": dict(stops.rules_described),
            },
            "price_max_age_s": stops.price_max_age,
            "positions_fetched_at": (
                None if stops.positions_fetched_at is None else utc_iso(stops.positions_fetched_at)
            ),
            "positions_error": stops.positions_error,
            "trade_cycles_error": stops.trade_cycles_error,
            "store_error": stops.store_error,
            "stale_ticks_ignored": stops.stale_ticks_ignored,
            "exits_triggered": stops.exits_triggered,
            "leading": stops.leading,
            "source": stops.source.value,
            "leader": stops.leader,
        }
    )


def rows_view(rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Stored rows as JSON gives them."""
    return [plain(row) for row in rows]


def unknown_orders_view(
    store: StoreSnapshot, reconciler: ReconcilerSnapshot | None
) -> dict[str, Any]:
    """The orders whose outcome is unknown, less those the Reconciler has settled since."""
    resolved = reconciler.resolved if reconciler is not None else frozenset()
    orders = [o for o in store.unknown_orders if o.client_order_id not in resolved]
    return {
        "count": len(orders),
        "orders": [
            {**{name: getattr(o, name) for name in OrderRecord.__slots__}, "at": utc_iso(o.at)}
            for o in orders
        ],
        "reconciler": None if reconciler is None else reconciler_view(reconciler),
    }


def stats_history_view(history: StatsHistory) -> dict[str, Any]:
    """The last hour minute by minute, oldest first; quiet minutes are left out."""
    return {
        "timestamp": utc_iso(history.now),
        "bucket_seconds": 60,
        "minutes": [
            {
                "minute": utc_iso(m.minute * 60),
                "signals": m.signals,
                "accepted": m.accepted,
                "rejected": m.rejected,
                "orders": m.orders,
                "rejections_by_reason": dict(m.rejections_by_reason),
                "latency_ms": {"p50": m.p50_ms, "p99": m.p99_ms},
            }
            for m in history.minutes
        ],
    }
