"""The TrailingStop alone, its Portfolio a paper exchange on real HTTP, stand-ins for the
Ledger and the Validator: positions fetched again when the clock passes the refresh
interval, and a price under the stop sends the exit to the symbol's Validator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator.clock import ManualClock
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.portfolio_client import PortfolioClient
from coordinator.messages.ledger import PositionsSeen
from coordinator.messages.pipeline import OrderFinished, OrderRecord, PricesUpdated, PriceUpdated
from coordinator.messages.stops import (
    ExitPosition,
    GetTrailingStops,
    StopTick,
    TrailingStopsSnapshot,
)
from coordinator.trading.execution import OrderStatus
from tests.actors.conftest import buy_at, elect, trailing_stop_alone
from tests.pipeline import PRICES
from tests.solo import Solo
from tests.waiting import wait_for

REFRESH = 10.0


def buy(paper: PaperExchange, symbol: str, quantity: float, at: float) -> None:
    buy_at(paper, symbol, quantity, at=at, order_id=f"coord-stop-actor-{symbol}")


@pytest.fixture
def stops(own_database: str, paper: PaperExchange) -> Iterator[Solo]:
    # A database of its own: the stops and exit orders of earlier tests are restored
    # at start, and would be watched (or block an exit) beside this test's position.
    clock = ManualClock()
    buy(paper, "ETHUSDC", 1.0, clock.time())
    settings = {
        "POSITIONS_REFRESH_INTERVAL": str(REFRESH),
        "STOP_RULES": "stoploss",
        "STOP_LOSS_PERCENT": "5",
    }
    with trailing_stop_alone(own_database, paper, clock, settings) as s:
        elect(s, own_database, "stops-test#1")
        yield s


def active(stops: Solo) -> int:
    return stops.ask(GetTrailingStops()).active


def price(stops: Solo, symbol: str, value: float) -> PricesUpdated:
    update = PriceUpdated(
        symbol=symbol, price=value, at=stops.clock.time(), received_mono=stops.clock.monotonic()
    )
    return PricesUpdated(updates=(update,))


def test_positions_are_fetched_again_when_the_clock_passes_the_refresh_interval(
    stops: Solo, paper: PaperExchange
) -> None:
    stops.clock.advance(0.25)  # the first tick fetches what is held at start
    assert stops.told("ledger", PositionsSeen).symbols == ("ETHUSDC",)
    wait_for(lambda: active(stops) == 1, message="the position's stop")
    buy(paper, "SOLUSDC", 2.0, stops.clock.time())
    stops.clock.advance(REFRESH - 1)
    assert active(stops) == 1
    stops.clock.advance(1.25)
    assert stops.told("ledger", PositionsSeen).symbols == ("SOLUSDC",)
    wait_for(lambda: active(stops) == 2, message="the new position's stop")


def test_a_price_under_the_stop_loss_sends_the_exit_to_the_symbols_validator(
    stops: Solo,
) -> None:
    stops.clock.advance(0.25)
    wait_for(lambda: active(stops) == 1, message="the position's stop")
    stops.tell(price(stops, "ETHUSDC", PRICES["ETHUSDC"] * 0.99))
    stops.tell(price(stops, "ETHUSDC", PRICES["ETHUSDC"] * 0.94))
    exit = stops.told("validator-0", ExitPosition)
    assert (exit.symbol, exit.quantity) == ("ETHUSDC", pytest.approx(1.0, rel=0.01))


def test_the_exit_names_when_the_portfolio_showed_its_holding_opened(
    stops: Solo, paper: PaperExchange
) -> None:
    """The Ledger's view of the same Portfolio reads the same time: what tells the
    stop's holding from a later one of the same size and price."""
    stops.clock.advance(0.25)
    wait_for(lambda: active(stops) == 1, message="the position's stop")
    stops.tell(price(stops, "ETHUSDC", PRICES["ETHUSDC"] * 0.94))
    exit = stops.told("validator-0", ExitPosition)
    reader = PortfolioClient(paper.url, timeout=5.0)
    try:
        view = reader.fetch(stops.clock.time())
    finally:
        reader.close()
    assert exit.opened_at is not None
    assert view.positions["ETHUSDC"].opened_at == (pytest.approx(exit.opened_at, abs=1e-6),)


def finished(side: str, symbol: str, at: float) -> OrderFinished:
    return OrderFinished(
        order=OrderRecord(
            client_order_id=f"c-{side}-{symbol}",
            signal_id=f"s-{side}-{symbol}",
            symbol=symbol,
            side=side,
            quantity=1.0,
            reference_price=PRICES["ETHUSDC"],
            state=OrderStatus.ACCEPTED,
            at=at,
        )
    )


def test_our_buy_brings_a_fetch_of_the_positions_within_a_second(
    stops: Solo, paper: PaperExchange
) -> None:
    """The holding our BUY opened gets its stop from a fetch soon after the fill, not at
    the next refresh (an accepted SELL no longer asks for one: it ends its stops at
    once)."""
    stops.clock.advance(0.25)
    wait_for(lambda: active(stops) == 1, message="the position's stop")
    buy(paper, "SOLUSDC", 2.0, stops.clock.time())
    stops.tell(finished("BUY", "SOLUSDC", stops.clock.time()))
    active(stops)  # answered once the BUY is taken, at this time of the clock
    stops.clock.advance(1.25)
    stops.tell(StopTick())
    stops.told("ledger", PositionsSeen, lambda m: m.symbols == ("SOLUSDC",))
    wait_for(lambda: active(stops) == 2, message="the bought position's stop")


def test_the_counts_alone_are_the_rows_counted(stops: Solo, paper: PaperExchange) -> None:
    """``/stats`` and ``/metrics`` ask without rows: the same number of holdings, and of
    stale ones, as the rows would show, with no row built."""
    buy(paper, "SOLUSDC", 2.0, stops.clock.time())
    stops.clock.advance(0.25)
    wait_for(lambda: active(stops) == 2, message="both positions' stops")
    stops.tell(price(stops, "ETHUSDC", PRICES["ETHUSDC"]))

    def both() -> tuple[TrailingStopsSnapshot, TrailingStopsSnapshot]:
        return stops.ask(GetTrailingStops()), stops.ask(GetTrailingStops(rows=False))

    full, counts = both()
    stale = [row["symbol"] for row in full.positions if row["stale"]]
    assert stale == ["SOLUSDC"], "no price for SOL yet; ETH's is fresh"
    assert (counts.active, counts.stale, counts.positions) == (2, 1, ())
    assert full.stale == 1 and full.active == 2

    stops.clock.advance(90.5)  # ETH's price now older than STOP_PRICE_MAX_AGE
    full, counts = both()
    assert [row["stale"] for row in full.positions] == [True, True]
    assert (counts.active, counts.stale, full.stale) == (2, 2, 2)
