"""The Ledger alone, its Portfolio a paper exchange on real HTTP and its store a real
PostgreSQL: reservations made, settled, refused to a late asker, and released when the
clock passes their lifetime; a stop's exit for a holding our SELL closed refused."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from coordinator.actors.ledger import Ledger
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.ledger import (
    GetLedgerSnapshot,
    Reservation,
    ReservationsExpired,
    Reserve,
    Settle,
)
from coordinator.trading.signals import Side, Signal, parse_signal
from coordinator.trading.stops import EXIT_ID_PREFIX
from coordinator.trading.validation import ExitTarget, MarketQuote, Reason
from tests.pipeline import PRICES, SYMBOLS, signal_payload
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

LIFETIME = 90.0


@pytest.fixture
def ledger(
    postgres: EmbeddedPostgres, clear_kill_switch: None, paper: PaperExchange
) -> Iterator[Solo]:
    clock = ManualClock()
    config = load_config(
        {
            "TRADING_SYMBOLS": ",".join(SYMBOLS),
            "SIZING_MODE": "table",
            "MAX_EXPOSURE_PERCENT": "100",
            "REQUIRE_MARKET_DATA": "false",
            "RESERVATION_LIFETIME": str(LIFETIME),
        }
    )
    services = make_services(
        config,
        redis_url="redis://unused",
        database_dsn=postgres.dsn,
        portfolio_url=paper.url,
        clock=clock,
    )
    with solo(Ledger, "ledger", services, clock=clock) as started:
        yield started


def buy(ledger: Solo, symbol: str = "BTCUSDC", side: str = "BUY") -> Signal:
    now_ms = int(ledger.clock.time() * 1000)
    parsed = parse_signal(json.dumps(signal_payload(symbol, side, timestamp_ms=now_ms)))
    assert isinstance(parsed, Signal), parsed
    return parsed


def reserve(
    ledger: Solo, signal: Signal, *, deadline_in: float = 5.0, exit: ExitTarget | None = None
) -> Reservation:
    quote = MarketQuote(PRICES[signal.symbol], ledger.clock.time())
    return ledger.ask(
        Reserve(
            signal=signal,
            market=quote,
            exit=exit,
            owner="validator-0#1",
            deadline=ledger.clock.time() + deadline_in,
        )
    )


def settle(ledger: Solo, reservation: Reservation, *, filled: bool = True) -> None:
    assert reservation.plan is not None and reservation.reservation_id, reservation.checks
    ledger.tell(
        Settle(
            reservation_id=reservation.reservation_id,
            filled=filled,
            symbol=reservation.plan.symbol,
            side=reservation.plan.side,
        )
    )


def reservations(ledger: Solo) -> int:
    return ledger.ask(GetLedgerSnapshot()).reservations


def test_a_buy_is_reserved_and_its_room_freed_when_settled_not_filled(ledger: Solo) -> None:
    reservation = reserve(ledger, buy(ledger))
    assert reservation.plan is not None and reservation.reservation_id, reservation.checks
    assert [c.step for c in reservation.checks if not c.passed] == []
    assert reservations(ledger) == 1
    settle(ledger, reservation, filled=False)
    assert reservations(ledger) == 0


def test_an_asker_that_gave_up_gets_no_reservation(ledger: Solo) -> None:
    late = reserve(ledger, buy(ledger), deadline_in=-1.0)
    assert late.plan is None and late.reservation_id is None
    assert late.checks[-1].reason == "internal_error"
    assert reservations(ledger) == 0


def test_a_reservation_nobody_settles_is_released_when_the_clock_passes_its_lifetime(
    ledger: Solo,
) -> None:
    assert reserve(ledger, buy(ledger)).reservation_id
    ledger.clock.advance(LIFETIME - 1)
    assert reservations(ledger) == 1
    ledger.clock.advance(2.0)
    expired = ledger.published(ReservationsExpired)
    assert (expired.count, expired.owners) == (1, ("validator-0#1",))
    wait_for(lambda: reservations(ledger) == 0, message="the room released")


def test_an_exit_for_the_holding_our_sell_closed_is_refused_though_a_like_one_is_held(
    ledger: Solo,
) -> None:
    """Closed holdings are read for a stop's exit only; this exit must still meet them.
    The Portfolio shows none of our fills (nothing reaches the exchange here): each one
    is laid over its view."""
    first = reserve(ledger, buy(ledger))
    settle(ledger, first)
    assert first.plan is not None
    price, quantity = PRICES["BTCUSDC"], first.plan.quantity
    target = ExitTarget(
        position_key=f"BTCUSDC@1@{price}",
        entry_price=price,
        quantity=quantity,
        stop=price * 0.97,
        price=price * 0.96,
        price_at=ledger.clock.time(),
    )
    exit_signal = dataclasses.replace(
        buy(ledger, side="SELL"), signal_id=EXIT_ID_PREFIX + "first", price=price * 0.96
    )
    sold = reserve(ledger, exit_signal, exit=target)
    assert sold.plan is not None and sold.plan.side is Side.SELL, sold.checks
    settle(ledger, sold)
    # A second holding like the first one: same price, the same size within rounding
    # and fees (the same holding to exit_mismatch).
    again = reserve(ledger, buy(ledger))
    settle(ledger, again)
    assert again.plan is not None and again.plan.quantity == pytest.approx(quantity, rel=0.005)

    late_exit = dataclasses.replace(exit_signal, signal_id=EXIT_ID_PREFIX + "late")
    refused = reserve(ledger, late_exit, exit=target)
    failure = next(c for c in refused.checks if not c.passed)
    assert failure.reason is Reason.POSITION_CHANGED, refused.checks
    assert "closed by our SELL" in failure.detail
    # A SELL signal names no holding: it sells the one held.
    plain = reserve(ledger, buy(ledger, side="SELL"))
    assert plain.plan is not None and plain.plan.side is Side.SELL, plain.checks
