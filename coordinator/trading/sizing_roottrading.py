"""Order size and the universe override as RootTrading's coordinator decided them
(``SIZING_MODE=rootTrading``), so that swapping coordinators changes no order size.

Read from RootTrading's ``coordinator/src/coordinator.py``:
``_calculate_unified_signal_strength`` (the force), ``_categorize_signal_strength`` (the
categories), ``_calculate_quantity`` and ``_check_feasibility`` (the amount), and the
consensus override of ``process_signal`` (the universe). Where the code and its summary
("force = consensus_strength x sqrt(strategies_count) x avg_confidence, falls back to
confidence and strength") differ, the code is followed; each place says how.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, InvalidOperation
from enum import StrEnum

from coordinator.trading.signals import Side, Signal
from coordinator.trading.sizing import SizingTable

__all__ = [
    "MIN_TRADE",
    "OVERRIDE_MIN_FORCE",
    "OVERRIDE_MIN_STRATEGIES",
    "ROOTTRADING_TABLE",
    "SAFETY_SHARE",
    "Amount",
    "Force",
    "ForceSource",
    "SizingMode",
    "roottrading_amount",
    "roottrading_force",
    "roottrading_quantity",
    "universe_override",
]


class SizingMode(StrEnum):
    ROOTTRADING = "roottrading"
    """RootTrading's own arithmetic (this module)."""
    TABLE = "table"
    """``SIZING_THRESHOLDS`` / ``SIZING_PERCENTS`` over ``sizing.signal_force``."""


# RootTrading: very_strong_threshold 12, strong 8, moderate 4; 12/18/22/28 % of free USDC.
ROOTTRADING_TABLE = SizingTable((4.0, 8.0, 12.0), (12.0, 18.0, 22.0, 28.0))
SAFETY_SHARE = 0.98
"""At most this share of the free quote goes into one order (``usdc_safety_margin``)."""
MIN_TRADE = 15.0
"""RootTrading's ``min_absolute_trade_usdc``; ours is ``MIN_ORDER_NOTIONAL`` (default 15)."""
OVERRIDE_MIN_FORCE = 2.0
OVERRIDE_MIN_STRATEGIES = 5

# RootTrading's SignalStrength map for a signal without a usable consensus; an unknown
# word (very_weak) counts 1.0 there too.
_STRENGTH_FORCE = {"very_strong": 2.5, "strong": 2.0, "moderate": 1.5, "weak": 1.0}
_STRENGTH_CONFIDENCE = 0.7
_DEFAULT_CONFIDENCE = 0.5


class ForceSource(StrEnum):
    CONSENSUS = "consensus"
    """consensus_strength x sqrt(strategies) x avg confidence."""
    STRENGTH = "strength"
    """The signal's strength word (RootTrading's map), one strategy."""
    DEFAULT = "default"
    """Neither: force 1.0, one strategy."""


@dataclass(frozen=True, slots=True)
class Force:
    value: float
    strategies: int
    """Strategies counted (1 unless the force came from the consensus)."""
    confidence: float
    """The confidence the force used."""
    source: ForceSource

    def describe(self) -> str:
        return f"force {self.value:.3f} ({self.source.value}, {self.strategies} strategies)"


def _metadata_confidence(payload: str) -> float | None:
    """``metadata.confidence`` of the payload, when it is a finite number."""
    try:
        metadata = json.loads(payload).get("metadata")
    except (ValueError, AttributeError, RecursionError):
        return None
    if not isinstance(metadata, dict):
        return None
    value = metadata.get("confidence")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def roottrading_force(signal: Signal) -> Force:
    """RootTrading's force of a signal.

    From the metadata when ``consensus_strength > 0`` and more than one strategy:
    ``consensus_strength x sqrt(strategies_count) x avg_confidence``, where the
    confidence is ``metadata.avg_confidence``, else ``metadata.confidence``, else 0.5 —
    never the top-level ``confidence``, which the aggregator sets to
    min(1, consensus_strength / 2.5) and is not an average. Otherwise the strength word
    (very_strong 2.5, strong 2.0, moderate 1.5, other 1.0), else 1.0.

    RootTrading also had a step between the two for a top-level confidence of 50 or
    more (read as a percentage); ours parses confidence as 0..1, so it cannot apply.
    """
    strength = signal.consensus_strength or 0.0
    count = signal.strategies_count if signal.strategies_count is not None else 1
    if strength > 0 and count > 1:
        confidence = signal.avg_confidence
        if confidence is None:
            confidence = _metadata_confidence(signal.payload)
        if confidence is None:
            confidence = _DEFAULT_CONFIDENCE
        value = strength * math.sqrt(count) * confidence
        return Force(value, count, confidence, ForceSource.CONSENSUS)
    if signal.strength is not None:
        value = _STRENGTH_FORCE.get(signal.strength, 1.0)
        return Force(value, 1, _STRENGTH_CONFIDENCE, ForceSource.STRENGTH)
    return Force(1.0, 1, _DEFAULT_CONFIDENCE, ForceSource.DEFAULT)


@dataclass(frozen=True, slots=True)
class Amount:
    amount: float | None
    """Quote to spend; None: refused, ``detail`` says why."""
    detail: str


def roottrading_amount(
    free_quote: float, percent: float, *, minimum: float, safety: float = SAFETY_SHARE
) -> Amount:
    """The quote amount of a BUY: ``percent`` of the free quote, at most ``safety`` of
    it, raised to ``minimum``.

    RootTrading refused a BUY with less than the minimum free; it then raised a smaller
    amount to the minimum after capping it, so with free quote between the minimum and
    minimum / 0.98 it spent more than the 98 % it meant to keep. Ours refuses that case
    too: the amount is never over ``safety`` of the free quote, never under ``minimum``.
    """
    if not math.isfinite(free_quote) or free_quote < minimum:
        return Amount(None, f"{free_quote:.2f} free, under the minimum order of {minimum:g}")
    cap = free_quote * safety
    share = free_quote * percent / 100.0
    amount = min(share, cap)
    if amount < minimum:
        if minimum > cap:
            return Amount(
                None,
                f"the minimum order of {minimum:g} is over {safety * 100:g} % of "
                f"{free_quote:.2f} free ({cap:.2f})",
            )
        return Amount(
            minimum,
            f"{percent:g} % of {free_quote:.2f} = {share:.2f}, raised to the minimum {minimum:g}",
        )
    capped = " (capped)" if share > cap else ""
    return Amount(amount, f"{percent:g} % of {free_quote:.2f} = {amount:.2f}{capped}")


def _quantize(quantity: float, decimals: int, rounding: str) -> float:
    # From the shortest decimal form, like ``validation.floor_quantity``.
    try:
        exact = Decimal(repr(float(quantity)))
        return float(exact.quantize(Decimal(1).scaleb(-decimals), rounding=rounding))
    except (InvalidOperation, ValueError, OverflowError):
        return 0.0


def roottrading_quantity(
    amount: float, price: float, *, decimals: int, minimum: float, ceiling: float
) -> float:
    """``amount / price`` floored to ``decimals``, unless that leaves the order under
    ``minimum`` (an amount raised to the minimum): then rounded up to the next step, if
    that stays within ``ceiling`` (the 98 % cap); 0 when neither fits."""
    if not price > 0 or not amount > 0 or not math.isfinite(amount / price):
        return 0.0
    down = _quantize(amount / price, decimals, ROUND_DOWN)
    if down * price >= minimum:
        return down
    up = _quantize(amount / price, decimals, ROUND_CEILING)
    if minimum <= up * price <= ceiling:
        return up
    return 0.0


def universe_override(signal: Signal, enabled: bool) -> Force | None:
    """The force of a BUY strong enough to enter outside the universe (RootTrading's
    consensus override: force >= 2.0 with >= 5 strategies); None when it is not, or
    when the override is off."""
    if not enabled or signal.side is not Side.BUY:
        return None
    force = roottrading_force(signal)
    if force.value >= OVERRIDE_MIN_FORCE and force.strategies >= OVERRIDE_MIN_STRATEGIES:
        return force
    return None
