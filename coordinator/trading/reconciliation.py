"""Reconciliation of orders whose outcome is unknown, against what the Trader executed.

RootTrading's Trader keeps its own order ids and never learns ours, so an order of ours
whose answer was lost (a read timeout, a 5xx, a crash between send and answer) can only
be found by what it was: symbol, side, quantity and the time it was sent. The Trader's
``GET /orders`` lists the orders it executed since it started (the quantity as
requested), and RootTrading's ``trade_executions`` table every fill (the quantity
executed, truncated to the step size, and Binance's id only).

The rules, all conservative, because a wrong "rejected" lets the same order be sent
again and a wrong "accepted" hides an order that never executed:

- a fill matches an order of ours when symbol and side are equal, its time is within
  the window around our send, and its quantity is ours (the Trader's list) or ours
  truncated by at most the step tolerance (an execution);
- an order is accepted only when exactly one fill matches it and that fill matches no
  other order of ours (unknown or settled): one fill never makes two of ours accepted;
- an order is rejected ("not found at the Trader") only when no fill matches it, its
  window has passed, and the fills read cover the whole window;
- anything else stays unknown, ambiguous ones with an ALERT.

Plain functions and values: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "FillSource",
    "MatchPolicy",
    "OurOrder",
    "Resolution",
    "Venue",
    "Verdict",
    "VerdictReason",
    "candidates",
    "matches",
    "merge_fills",
    "reconcile",
]

_SAME_QUANTITY = 1e-9
"""Relative difference two floats of the same requested quantity may show."""


class Resolution(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class VerdictReason(StrEnum):
    MATCHED = "matched"
    """Exactly one fill matches, and it matches no other order of ours."""
    NOT_FOUND = "not_found"
    """No fill matches, the window has passed and the fills read cover it."""
    AMBIGUOUS = "ambiguous"
    """Several fills match, or the one that matches could be another order of ours."""
    WINDOW_OPEN = "window_open"
    """No fill matches yet, and the window has not passed."""
    NOT_COVERED = "not_covered"
    """No fill matches, but what was read does not cover the window."""


class FillSource(StrEnum):
    TRADER = "trader"
    """``GET /orders``: the Trader's id, the requested quantity."""
    EXECUTIONS = "executions"
    """``trade_executions``: Binance's id, the executed quantity."""


@dataclass(frozen=True, slots=True)
class OurOrder:
    client_order_id: str
    symbol: str
    side: str
    quantity: float
    """The quantity we asked for."""
    sent_at: float
    """When it was first sent (or claimed just before), epoch seconds."""
    trader_order_id: str | None = None
    """For a settled order: the Trader's id it was accepted with."""
    last_sent_at: float | None = None
    """When it was last sent (or last heard of), if later: a held order sent again, or
    an answer that came late. The window runs to this plus ``window_after``."""


@dataclass(frozen=True, slots=True)
class Venue:
    """One fill, from either source."""

    fill_id: str
    """The Trader's ``order_…`` id, or Binance's id for an execution."""
    source: FillSource
    symbol: str
    side: str
    quantity: float
    at: float
    """When it executed, epoch seconds."""
    binance_order_id: str | None = None
    """Binance's id (an execution's own id; the Trader's list carries it too)."""


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    window_before: float = 5.0
    """Seconds before our send a fill may carry (clocks differ)."""
    window_after: float = 15.0
    """Seconds after our send a fill may carry; once past, a missing fill means the
    order was not executed. Longer than the Trader's 10 s de-duplication, so an order
    found missing can be sent again as the same body without being taken for the
    failed attempt."""
    step_tolerance: float = 0.01
    """Fraction by which an execution's quantity may be below ours (the step size
    truncation)."""

    def __post_init__(self) -> None:
        for name in ("window_before", "window_after", "step_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.step_tolerance >= 1:
            raise ValueError(f"step_tolerance must be below 1, got {self.step_tolerance!r}")

    def window(self, order: OurOrder) -> tuple[float, float]:
        last = max(order.sent_at, order.last_sent_at or order.sent_at)
        return order.sent_at - self.window_before, last + self.window_after


@dataclass(frozen=True, slots=True)
class Verdict:
    client_order_id: str
    resolution: Resolution
    reason: VerdictReason
    trader_order_id: str | None
    """The fill's id when accepted."""
    detail: str
    candidates: tuple[str, ...] = ()
    """Ids of every fill that matched it."""

    @property
    def alert(self) -> bool:
        """Unknown for a reason no waiting resolves by itself."""
        return self.reason is VerdictReason.AMBIGUOUS


def matches(order: OurOrder, fill: Venue, policy: MatchPolicy) -> bool:
    """Whether ``fill`` could be ``order``."""
    if fill.symbol != order.symbol or fill.side != order.side:
        return False
    start, end = policy.window(order)
    if not start <= fill.at <= end:
        return False
    if not (order.quantity > 0 and fill.quantity > 0):
        return False
    top = order.quantity * (1 + _SAME_QUANTITY)
    if fill.source is FillSource.TRADER:
        return abs(fill.quantity - order.quantity) <= order.quantity * _SAME_QUANTITY
    return order.quantity * (1 - policy.step_tolerance) - 1e-12 <= fill.quantity <= top


def merge_fills(trader: Iterable[Venue], executions: Iterable[Venue]) -> list[Venue]:
    """Both sources, each fill once: an execution whose Binance id a Trader order
    carries is that order (the Trader's entry is kept: it carries the id we record)."""
    merged = list(trader)
    known = {f.binance_order_id for f in merged if f.binance_order_id}
    seen: set[str] = set()
    for fill in executions:
        key = fill.binance_order_id or fill.fill_id
        if key in known or key in seen:
            continue
        seen.add(key)
        merged.append(fill)
    return merged


def candidates(order: OurOrder, fills: Iterable[Venue], policy: MatchPolicy) -> list[Venue]:
    return [fill for fill in fills if matches(order, fill, policy)]


def reconcile(
    unknown: Sequence[OurOrder],
    fills: Sequence[Venue],
    *,
    now: float,
    covered_since: float | None,
    covered_until: float,
    policy: MatchPolicy,
    settled: Sequence[OurOrder] = (),
) -> tuple[Verdict, ...]:
    """A verdict for each order of ``unknown``.

    ``fills`` is everything read (``merge_fills``); it holds every fill executed between
    ``covered_since`` (None: no complete record was read) and ``covered_until``.
    ``settled`` are our orders whose outcome is known and that may have made one of
    these fills: a fill one of them could be is never given to an unknown order, and a
    fill carrying a settled order's id is that order's.
    """
    taken = {o.trader_order_id for o in settled if o.trader_order_id}
    free = [f for f in fills if f.fill_id not in taken]
    # A settled order whose own fill was read has found it: it competes for no other.
    placed = {f.fill_id for f in fills if f.fill_id in taken}
    rivals = [o for o in settled if o.trader_order_id not in placed]
    ours = {o.client_order_id: o for o in unknown}
    claims: dict[str, list[str]] = {f.fill_id: [] for f in free}
    matched: dict[str, list[Venue]] = {}
    for order in ours.values():
        found = candidates(order, free, policy)
        matched[order.client_order_id] = found
        for fill in found:
            claims[fill.fill_id].append(order.client_order_id)
    for order in rivals:
        for fill in candidates(order, free, policy):
            claims[fill.fill_id].append(order.client_order_id)
    verdicts = []
    for client_id, order in ours.items():
        found = matched[client_id]
        resolution, reason, detail = _judge(
            order,
            found,
            claims,
            now=now,
            covered_since=covered_since,
            covered_until=covered_until,
            policy=policy,
        )
        verdicts.append(
            Verdict(
                client_order_id=client_id,
                resolution=resolution,
                reason=reason,
                trader_order_id=found[0].fill_id if reason is VerdictReason.MATCHED else None,
                detail=detail,
                candidates=tuple(f.fill_id for f in found),
            )
        )
    return tuple(verdicts)


def _judge(
    order: OurOrder,
    found: list[Venue],
    claims: dict[str, list[str]],
    *,
    now: float,
    covered_since: float | None,
    covered_until: float,
    policy: MatchPolicy,
) -> tuple[Resolution, VerdictReason, str]:
    """The resolution of one unknown order, given the fills that match it (``found``)
    and every order of ours each free fill matches (``claims``)."""
    client_id = order.client_order_id
    if len(found) == 1 and claims[found[0].fill_id] == [client_id]:
        fill = found[0]
        return (
            Resolution.ACCEPTED,
            VerdictReason.MATCHED,
            f"found at the Trader: {fill.source.value} {fill.fill_id}, "
            f"{fill.side} {fill.quantity:.10g} {fill.symbol}, "
            f"{fill.at - order.sent_at:+.3f} s from the send",
        )
    if found:
        ids = ", ".join(f.fill_id for f in found)
        others = sorted({c for f in found for c in claims[f.fill_id]} - {client_id})
        return (
            Resolution.UNKNOWN,
            VerdictReason.AMBIGUOUS,
            f"{len(found)} fill(s) match ({ids})"
            + (f", also matching our order(s) {', '.join(others)}" if others else "")
            + "; an operator must resolve it",
        )
    start, end = policy.window(order)
    if now <= end or covered_until <= end:
        return (
            Resolution.UNKNOWN,
            VerdictReason.WINDOW_OPEN,
            f"no fill yet; the window closes {end - now:.1f} s from now",
        )
    if covered_since is None or covered_since > start:
        return (
            Resolution.UNKNOWN,
            VerdictReason.NOT_COVERED,
            "no fill found, but the fills read do not cover the time it was "
            "sent (the Trader restarted since, and no trade_executions table)",
        )
    return (
        Resolution.REJECTED,
        VerdictReason.NOT_FOUND,
        "not found at the Trader: no fill of "
        f"{order.side} {order.quantity:.10g} {order.symbol} within "
        f"-{policy.window_before:g}/+{policy.window_after:g} s of the send",
    )
