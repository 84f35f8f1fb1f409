"""The end of the soak: what the exchange's own order log and the store say, checked
against the invariants, and the table printed from it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import redis

from bench.soak_load import PublishedSignal
from bench.soak_stack import SIGNALS_STREAM

__all__ = ["INVARIANTS", "Facts", "Verdict", "check", "gather", "table"]

INVARIANTS = {
    "decided_once": "every signal published (or stored) decided exactly once",
    "one_request_per_client_id": "no client order id requested twice (a re-send after 5xx aside)",
    "intent_before_order": "no order at the exchange without a stored intent",
    "sell_within_holding": "no sell above the holding (none refused for insufficient balance)",
    "buy_within_funds": "no buy refused for insufficient quote balance",
    "no_reservation_left": "no reservation left in the Ledger once quiet",
    "unknown_reconciled_or_listed": "every unknown order reconciled or listed at /orders/unknown",
    "store_matches_exchange": "each stored order state agrees with the exchange's fills",
    "held_positions_watched": "every position held once quiet has a stop, none at or under it",
    "coordinator_alive": "the coordinator never exits by itself",
}
_EVIDENCE_SHOWN = 12


@dataclass
class Facts:
    """Everything read at the end."""

    published: list[PublishedSignal]
    decided_events: dict[str, list[dict[str, Any]]]
    unknown_seen: dict[str, float]
    fault_windows: list[tuple[float, float, str]]
    """(from, to, kind) monotonic: when a pub/sub signal may be lost by design."""
    unplanned_exits: list[str]
    start: float
    late_after: float
    """Seconds after which the coordinator stops waiting for an answer (unknown)."""
    decisions: dict[str, tuple[str, str | None, str, str | None]] = field(default_factory=dict)
    """signal id -> (outcome, reason, detail, source)."""
    sell_sizing: dict[str, str] = field(default_factory=dict)
    """signal id of a SELL -> what it was sized on (its portfolio and sizing checks)."""
    stored_signals: dict[str, str] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    paper_stats: dict[str, Any] = field(default_factory=dict)
    trader_orders: list[Any] | None = None
    """The exchange's ``GET /orders`` (the Trader's own ids), when it serves it."""
    unknown_listed: set[str] | None = None
    stats: Any = None
    diagnostic: Any = None
    stream_pending: int | None = None
    """Stream entries delivered and never acknowledged, once quiet."""
    positions: list[Any] | None = None
    """The exchange's open positions once quiet."""
    stops: Any = None
    """GET /trailing-stops once quiet."""


def gather(facts: Facts, stack: Any) -> Facts:
    with psycopg2.connect(stack.postgres.dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT d.signal_id, d.outcome, d.reason, d.detail, s.source
               FROM coordinator_decisions d LEFT JOIN coordinator_signals s USING (signal_id)"""
        )
        facts.decisions = {r[0]: (r[1], r[2], r[3], r[4]) for r in cur.fetchall()}
        cur.execute("SELECT signal_id, checks FROM coordinator_decisions WHERE side = 'SELL'")
        facts.sell_sizing = {
            r[0]: "; ".join(
                str(c.get("detail"))
                for c in r[1] or []
                if isinstance(c, dict) and c.get("step") in ("portfolio", "sizing")
            )
            for r in cur.fetchall()
        }
        cur.execute("SELECT signal_id, source FROM coordinator_signals")
        facts.stored_signals = dict(cur.fetchall())
        cur.execute(
            """SELECT client_order_id, signal_id, symbol, side, quantity, state,
                      trader_order_id, error FROM coordinator_orders"""
        )
        names = [c.name for c in cur.description]
        facts.orders = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    conn.close()
    facts.arrivals = (stack.get(stack.paper_url, "/_paper/orders", 30) or {}).get("orders", [])
    facts.paper_stats = stack.get(stack.paper_url, "/_paper/stats", 30) or {}
    served = stack.get(stack.paper_url, "/orders?limit=0", 30)
    if isinstance(served, dict) and isinstance(served.get("orders"), list):
        facts.trader_orders = served["orders"]
    listed = stack.get(stack.url, "/orders/unknown")
    if listed is not None:
        facts.unknown_listed = {o["client_order_id"] for o in listed.get("orders", [])}
    try:
        client = redis.Redis.from_url(stack.redis.url, socket_timeout=5)
        facts.stream_pending = int(client.xpending(SIGNALS_STREAM, "coordinator")["pending"])
        client.close()
    except redis.RedisError:
        facts.stream_pending = None
    facts.positions = stack.get(stack.paper_url, "/positions/active")
    facts.stops = stack.get(stack.url, "/trailing-stops")
    facts.stats = stack.get(stack.url, "/stats")
    facts.diagnostic = stack.get(stack.url, "/diagnostic")
    return facts


def reservation_leaves(answer: Any, path: str = "") -> list[tuple[str, float]]:
    """Numbers of open reservations in an API answer, wherever the Ledger puts them."""
    found: list[tuple[str, float]] = []
    if isinstance(answer, dict):
        for key, value in answer.items():
            found += reservation_leaves(value, f"{path}.{key}" if path else str(key))
    elif (
        isinstance(answer, int | float)
        and not isinstance(answer, bool)
        and "reserv" in path.lower()
    ):
        found.append((path, float(answer)))
    return found


_NOT_OPEN = ("expired", "released", "leaked", "refused", "settled", "lifetime", "total", "since")


@dataclass
class Verdict:
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    lost_pubsub: int = 0
    resent_after_5xx: int = 0
    reconciled: list[str] = field(default_factory=list)
    reservations: list[tuple[str, float]] = field(default_factory=list)
    reservations_checked: bool = False


def check(facts: Facts) -> Verdict:
    verdict = Verdict()
    bad = verdict.violations
    at = lambda mono: f"t+{mono - facts.start:.1f}s"  # noqa: E731

    # Every signal published decided exactly once.
    for p in facts.published:
        events = facts.decided_events.get(p.signal_id, [])
        if len(events) > 1:
            bad["decided_once"].append(
                f"{p.signal_id} ({p.side} {p.symbol}) decided {len(events)} times: {events}"
            )
        if p.signal_id in facts.decisions:
            continue
        if p.on_stream:
            bad["decided_once"].append(
                f"{p.signal_id} ({p.side} {p.symbol}, stream, published {at(p.at)}) never decided"
            )
        elif p.signal_id.startswith("db:"):
            # Its trading_signals row was written before it was published: whatever
            # pub/sub lost, the catch-up finds.
            bad["decided_once"].append(
                f"{p.signal_id} ({p.side} {p.symbol}, pub/sub, its trading_signals row "
                f"written, published {at(p.at)}) never decided"
            )
        elif any(start - 15 <= p.at <= end for start, end, _ in facts.fault_windows):
            verdict.lost_pubsub += 1
        else:
            bad["decided_once"].append(
                f"{p.signal_id} ({p.side} {p.symbol}, pub/sub to {p.receivers} subscriber(s), "
                f"published {at(p.at)}, no process or Redis fault near) never decided"
            )
    for signal_id, source in facts.stored_signals.items():
        if signal_id not in facts.decisions:
            bad["decided_once"].append(f"{signal_id} (source {source}) stored but never decided")

    # No client order id requested twice; none without a stored intent.
    fills = facts.paper_stats.get("fills_by_client_order_id", {})
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for arrival in facts.arrivals:
        by_id[arrival.get("client_order_id") or ""].append(arrival)
    for client_id, rows in by_id.items():
        if not client_id:
            bad["intent_before_order"].append(f"{len(rows)} order(s) with no client order id")
            continue
        if client_id not in facts.orders:
            bad["intent_before_order"].append(
                f"{client_id}: {_arrivals(rows, at)}; no stored intent"
            )
        if len(rows) > 1:
            # A 5xx answer may still hide a fill ("failed after the fill"): only a
            # re-send after failures that filled nothing is allowed.
            if all(
                (r.get("status") or 0) >= 500 and "after the fill" not in str(r.get("error"))
                for r in rows[:-1]
            ):
                verdict.resent_after_5xx += 1
            else:
                bad["one_request_per_client_id"].append(
                    f"{client_id} ({_stored(facts, client_id)}): {_arrivals(rows, at)}"
                )

    # No sell above the holding, no buy above the funds.
    for index, arrival in enumerate(facts.arrivals):
        error = str(arrival.get("error") or "")
        if arrival.get("status") == 400 and error.startswith("insufficient"):
            key = "sell_within_holding" if arrival["side"] == "SELL" else "buy_within_funds"
            # The orders of the symbol just before it: what the coordinator sized it on.
            before = [a for a in facts.arrivals[:index] if a["symbol"] == arrival["symbol"]][-2:]
            bad[key].append(
                f"{arrival['client_order_id']} ({_stored(facts, arrival['client_order_id'])}) "
                f"{arrival['side']} {arrival['quantity']} {arrival['symbol']} at "
                f"{at(arrival['mono'])}: {error}; sized on: {_sizing(facts, arrival)}; before it: "
                + "; ".join(
                    f"{a['client_order_id']} ({_stored(facts, a['client_order_id'])}) "
                    + _arrivals([a], at)
                    for a in before
                )
            )

    # No reservation left.
    leaves = [
        (path, value)
        for path, value in reservation_leaves(
            {"stats": facts.stats, "diagnostic": facts.diagnostic}
        )
        if not path.startswith("diagnostic.config.")  # settings, not state
    ]
    verdict.reservations = leaves
    open_leaves = [(p, v) for p, v in leaves if not any(w in p.lower() for w in _NOT_OPEN)]
    verdict.reservations_checked = bool(open_leaves)
    for path, value in open_leaves:
        if value > 0:
            bad["no_reservation_left"].append(f"{path} = {value:g} once quiet")
    if facts.stats is None:
        bad["no_reservation_left"].append("GET /stats did not answer once quiet")

    # Unknown orders reconciled or listed; stored states against the exchange's fills.
    for client_id, order in facts.orders.items():
        state = order["state"]
        filled = fills.get(client_id, 0) > 0
        if state == "unknown" and (
            facts.unknown_listed is None or client_id not in facts.unknown_listed
        ):
            bad["unknown_reconciled_or_listed"].append(
                f"{client_id} ({_stored(facts, client_id)}) unknown, "
                + (
                    "GET /orders/unknown did not answer"
                    if facts.unknown_listed is None
                    else "not listed at GET /orders/unknown"
                )
            )
        if client_id in facts.unknown_seen and state in ("accepted", "rejected"):
            verdict.reconciled.append(client_id)
        if state == "accepted" and not filled:
            bad["store_matches_exchange"].append(
                f"{client_id} ({_stored(facts, client_id)}) accepted, never filled at the "
                "exchange: "
                f"{_arrivals(by_id.get(client_id, []), at)}"
            )
        elif state == "rejected" and filled:
            bad["store_matches_exchange"].append(
                f"{client_id} ({_stored(facts, client_id)}) rejected, but the exchange filled it: "
                f"{_arrivals(by_id.get(client_id, []), at)}"
            )
        elif state in ("pending", "sent"):
            bad["store_matches_exchange"].append(
                f"{client_id} ({_stored(facts, client_id)}) still {state} once quiet; "
                f"filled at the exchange: {filled}"
            )
    if facts.trader_orders is not None:
        # The Trader's ids of the orders it filled: an order accepted under another id
        # was read as a success from an answer that filled nothing.
        known = {str(o.get("id") or o.get("order_id")) for o in facts.trader_orders}
        for client_id, order in facts.orders.items():
            filled = fills.get(client_id, 0) > 0  # when not, said above already
            if (
                order["state"] == "accepted"
                and filled
                and str(order["trader_order_id"]) not in known
            ):
                bad["store_matches_exchange"].append(
                    f"{client_id} ({_stored(facts, client_id)}) accepted as "
                    f"{order['trader_order_id']}, which GET /orders does not list"
                )
    _check_stops(facts, bad["held_positions_watched"])
    for reason in facts.unplanned_exits:
        bad["coordinator_alive"].append(reason)
    return verdict


def _check_stops(facts: Facts, bad: list[str]) -> None:
    if facts.positions is None or facts.stops is None:
        bad.append("GET /positions/active or GET /trailing-stops did not answer once quiet")
        return
    stops: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in facts.stops.get("positions", []):
        stops[row["symbol"]].append(row)
    for position in facts.positions:
        symbol = position["symbol"]
        watched = stops.get(symbol)
        if not watched:
            bad.append(f"{symbol} {position['quantity']:g} held, no stop watches it")
            continue
        for row in watched:
            price, level = row.get("last_price"), row.get("stop")
            dust = "dust" in str(row.get("state"))  # a remainder too small to sell, reported
            if price is not None and level is not None and price <= level and not dust:
                bad.append(
                    f"{symbol} {position['quantity']:g} held at {price:g}, at or under its stop "
                    f"{level:g} (key {row['position_key']}, state {row['state']}, attempts "
                    f"{row['exit_attempts']}, detail {row.get('detail')!r})"
                )


def _sizing(facts: Facts, arrival: dict[str, Any]) -> str:
    order = facts.orders.get(arrival["client_order_id"])
    sized = None if order is None else facts.sell_sizing.get(order["signal_id"])
    return sized or "not stored"


def _stored(facts: Facts, client_id: str) -> str:
    order = facts.orders.get(client_id)
    if order is None:
        return "not in the store"
    return (
        f"{order['signal_id']}, {order['side']} {order['quantity']:g} {order['symbol']}, "
        f"stored {order['state']}"
    )


def _arrivals(rows: list[dict[str, Any]], at: Any) -> str:
    if not rows:
        return "never arrived"
    return "arrivals " + ", ".join(
        f"{at(r['mono'])} {r['side']} {r['quantity']:g} -> {r.get('status')}"
        + (f" after {r['answered'] - r['mono']:.1f}s" if r.get("answered") else "")
        for r in rows
    )


def table(facts: Facts, verdict: Verdict, faults: Counter[str], header: str) -> str:
    published = facts.published
    decided = [facts.decisions[p.signal_id] for p in published if p.signal_id in facts.decisions]
    outcomes = Counter(d[0] for d in decided)
    exits = Counter(d[0] for d in facts.decisions.values() if d[3] == "trailing_stop")
    statuses = Counter(_status_class(a, facts.late_after) for a in facts.arrivals)
    states = Counter(o["state"] for o in facts.orders.values())
    unknown_now = [c for c, o in facts.orders.items() if o["state"] == "unknown"]
    rows = [
        (
            "signals published",
            f"{len(published)} (stream {sum(p.on_stream and not p.receivers for p in published)}, "
            f"pub/sub {sum(bool(p.receivers) and not p.on_stream for p in published)}, "
            f"both {sum(bool(p.receivers) and p.on_stream for p in published)}; "
            f"invalid {sum(not p.valid for p in published)})",
        ),
        (
            "signals decided",
            f"{len(decided)} ({_counts(outcomes)}); lost on pub/sub under a fault "
            f"{verdict.lost_pubsub}",
        ),
        ("top rejections", _counts(Counter(d[1] for d in decided if d[0] == "rejected"), 6)),
        ("exits (trailing stop) decided", f"{sum(exits.values())} ({_counts(exits)})"),
        (
            "orders at the exchange",
            f"{len(facts.arrivals)} requests ({_counts(statuses)}); "
            f"{facts.paper_stats.get('orders_filled', '?')} filled; "
            f"re-sent after 5xx {verdict.resent_after_5xx}",
        ),
        ("orders in the store", f"{len(facts.orders)} ({_counts(states)})"),
        (
            "orders listed by GET /orders",
            "not served" if facts.trader_orders is None else str(len(facts.trader_orders)),
        ),
        ("faults injected", _counts(faults) or "none"),
        (
            "unknown orders",
            f"{len(facts.unknown_seen | dict.fromkeys(unknown_now, 0.0))} seen, "
            f"{len(unknown_now)} still unknown, listed at /orders/unknown "
            f"{'?' if facts.unknown_listed is None else len(facts.unknown_listed)}",
        ),
        ("reconciled", f"{len(verdict.reconciled)}"),
        (
            "stream entries unacknowledged",
            "?" if facts.stream_pending is None else str(facts.stream_pending),
        ),
        (
            "reservations once quiet",
            ", ".join(f"{p}={v:g}" for p, v in verdict.reservations)
            or "not exposed by /stats or /diagnostic: unchecked",
        ),
    ]
    for key in INVARIANTS:
        found = verdict.violations.get(key, [])
        unchecked = key == "no_reservation_left" and not verdict.reservations_checked and not found
        rows.append((f"violations: {key}", "unchecked" if unchecked else str(len(found))))
    width = max(len(r[0]) for r in rows)
    lines = [header, "-" * len(header)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    for key, found in verdict.violations.items():
        if not found:
            continue
        lines.append(f"\n{key}: {INVARIANTS[key]} -- {len(found)} violation(s)")
        lines += [f"  - {line}" for line in found[:_EVIDENCE_SHOWN]]
        if len(found) > _EVIDENCE_SHOWN:
            lines.append(f"  ... and {len(found) - _EVIDENCE_SHOWN} more")
    lost = Counter(d[1] for d in decided if d[1] in ("trader_error", "trader_unavailable"))
    if lost:
        lines.append(
            f"\nnote: signals refused after a Trader failure (5xx or breaker open), never "
            f"sent again: {_counts(lost)}"
        )
    exit_reasons = Counter(
        d[1] for d in facts.decisions.values() if d[3] == "trailing_stop" and d[0] != "accepted"
    )
    if exit_reasons:
        lines.append(f"note: exits not accepted, by reason: {_counts(exit_reasons)}")
    lines += verdict.notes
    return "\n".join(lines)


def _status_class(arrival: dict[str, Any], late_after: float) -> str:
    status = arrival.get("status")
    if status is None:
        return "unanswered"
    if arrival.get("answered") and arrival["answered"] - arrival["mono"] > late_after:
        return "answered too late"
    if status < 300:
        return "accepted"
    if status < 500:
        return "rejected"
    return "5xx"


def _counts(counter: Counter[Any], top: int | None = None) -> str:
    return ", ".join(f"{k} {n}" for k, n in counter.most_common(top))
