"""Every signal of RootTrading's contract sized with the default settings
(SIZING_MODE=rootTrading) as RootTrading's coordinator sized it: a BUY gets the amount
its arithmetic gives, a SELL the free base balance it sent."""

from __future__ import annotations

import json
import math
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import load_config
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.signals import Side, Signal, parse_signal
from coordinator.trading.validation import (
    Balance,
    LedgerState,
    MarketQuote,
    PortfolioView,
    PositionView,
    RiskConfig,
)
from tests.contract.fixtures import contract_files, load_json, needs_contract

pytestmark = needs_contract

SIGNALS = contract_files("signals")


def default_config() -> RiskConfig:
    """The Ledger's RiskConfig from the default settings (a Portfolio and a Trader
    configured, as under RootTrading's compose)."""
    config = load_config({"REDIS_URL": "redis://redis:6379/0"})
    assert config.risk.sizing_mode == "roottrading"
    return config.risk


def balances() -> dict[str, Balance]:
    rows = load_json("portfolio/get_balances.json")["response"]["body"]
    return {r["asset"]: Balance(r["free"], r["total"], r["value_usdc"]) for r in rows}


def positions() -> dict[str, PositionView]:
    rows = load_json("portfolio/get_positions_active.json")["response"]["body"]
    return {
        r["symbol"]: PositionView(
            r["symbol"], r["quantity"], r["entry_price"], r["value"], r["pnl"]
        )
        for r in rows
    }


def roottrading_amount(metadata: dict[str, Any], free_usdc: float) -> tuple[str, float]:
    """coordinator.py's own steps (``_calculate_unified_signal_strength``,
    ``_categorize_signal_strength``, ``_calculate_quantity``), written out again."""
    strength = metadata.get("consensus_strength", 0)
    count = metadata.get("strategies_count", metadata.get("strategy_count", 1))
    confidence = metadata.get("avg_confidence", metadata.get("confidence", 0.5))
    force = strength * (count**0.5) * confidence if strength > 0 and count > 1 else 1.0
    if force >= 12.0:
        category, percent = "VERY_STRONG", 28.0
    elif force >= 8.0:
        category, percent = "STRONG", 22.0
    elif force >= 4.0:
        category, percent = "MODERATE", 18.0
    else:
        category, percent = "WEAK", 12.0
    amount = min(free_usdc * (percent / 100), free_usdc * 0.98)
    return category, max(15.0, amount)


def floor8(value: float) -> float:
    return float(Decimal(repr(value)).quantize(Decimal("1e-8"), rounding=ROUND_DOWN))


def parsed(path: Path) -> Signal:
    signal = parse_signal(path.read_bytes(), max_bytes=1 << 20)
    assert isinstance(signal, Signal), signal
    return signal


def size(signal: Signal, view: PortfolioView) -> Any:
    return evaluate_order(
        signal,
        view=view,
        ledger=LedgerState(),
        market=MarketQuote(price=signal.price, at=signal.timestamp),
        config=default_config(),
        now=signal.timestamp + 1,
    )


def test_every_signal_file_is_sized():
    assert SIGNALS, "no signal files"
    sides = {json.loads(p.read_bytes())["side"] for p in SIGNALS}
    assert sides == {"BUY", "SELL"}


@pytest.mark.parametrize("path", SIGNALS, ids=[p.stem for p in SIGNALS])
def test_each_signal_is_sized_as_roottrading_sized_it(path):
    signal = parsed(path)
    metadata = json.loads(path.read_bytes())["metadata"]
    held = balances()
    if signal.side is Side.BUY:
        # The free USDC of the Portfolio's snapshot, nothing held: RootTrading refused
        # a BUY of a symbol in an open cycle, and the sizing is what is looked at here.
        view = PortfolioView({"USDC": held["USDC"]}, {}, fetched_at=signal.timestamp)
        evaluation = size(signal, view)
        plan = evaluation.plan
        assert plan is not None, evaluation.failure
        category, amount = roottrading_amount(metadata, held["USDC"].free)
        assert plan.category == category
        assert plan.quantity == floor8(amount / signal.price)
        assert plan.notional == pytest.approx(amount, abs=signal.price * 1e-8)
    else:
        # RootTrading sold the free base balance; ours min(position, free base): the
        # free SOL (1.105747) is under the cycle's gross 1.106.
        view = PortfolioView(held, positions(), fetched_at=signal.timestamp)
        plan = size(signal, view).plan
        assert plan is not None
        sent = load_json("trader/post_order_signal_sell.json")["request"]["body"]
        assert plan.quantity == sent["quantity"] == held["SOL"].free


def test_the_shared_timeline_buy_is_the_order_roottrading_sent():
    """signals/buy_consensus.json at 14:03: RootTrading sent 1.1068501275829288 SOL at
    199.87 (trader/post_order_signal_buy.json), 12 % (WEAK, force 2.71) of the free
    USDC before that buy (1843.55: the 14:05 snapshot's 1622.45 plus the 221.10 the
    1.106 SOL filled cost)."""
    signal = parsed(next(p for p in SIGNALS if p.name == "buy_consensus.json"))
    sent = load_json("trader/post_order_signal_buy.json")["request"]["body"]
    free_before = sent["quantity"] * signal.price / 0.12
    assert free_before == pytest.approx(1843.551125, abs=1e-6)
    view = PortfolioView(
        {"USDC": Balance(free_before, free_before, free_before)}, {}, fetched_at=signal.timestamp
    )
    plan = size(signal, view).plan
    assert plan is not None and plan.category == "WEAK"
    assert plan.quantity == floor8(sent["quantity"]) == 1.10685012
    assert math.isclose(plan.notional, 221.226135, abs_tol=199.87e-8)
