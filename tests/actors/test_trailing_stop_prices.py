"""A holding is decided on the newest price as soon as it is watched, not at the next
candle: RootTrading publishes closed candles only, so the next price of a symbol may be a
minute away. A follower keeps the prices it hears for the term it may lead; a process
that has just started reads the last closes RootTrading stored in ``market_data``."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
import pytest

from coordinator.clock import ManualClock
from coordinator.cluster.lease import LossReason
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.stop_store import StopStore
from coordinator.messages.leadership import LeaderElected, LeadershipLost
from coordinator.messages.stops import ExitPosition, GetTrailingStops
from tests.actors.conftest import buy_at, elect, take_lease, trailing_stop_alone
from tests.actors.test_trailing_stop_leader import (
    ENTRY,
    PEAK,
    UNDER_THE_TRAIL,
    price,
    rows,
    stored_peak,
    told_meanwhile,
    watching,
)
from tests.pipeline import PRICES
from tests.solo import Solo
from tests.waiting import wait_for

SETTINGS = {
    "POSITIONS_REFRESH_INTERVAL": "10",
    "STOP_RULES": "stoploss,percent",
    "STOP_LOSS_PERCENT": "5",
    "TRAILING_STOP_PERCENT": "2",
    "TRAILING_STOP_OFFSET_PERCENT": "1",
    "STOP_PRICE_MAX_AGE": "90",
}


def entries_behind() -> ManualClock:
    """The test's clock, a minute ahead of the paper exchange's own, with which it stamps
    the entries: every price told is later than the holding's purchase."""
    return ManualClock(wall=time.time() + 60)


@pytest.mark.parametrize("heard_ago", [5.0, 91.0])
def test_a_price_heard_while_following_is_decided_on_when_elected(
    own_database: str, paper: PaperExchange, heard_ago: float
) -> None:
    """The price fell through the stop while another instance held the lease (or none
    did). Elected, this one exits on it once the Portfolio shows the holding, without
    waiting for another price; unless that price is older than STOP_PRICE_MAX_AGE."""
    clock = entries_behind()
    buy_at(paper, "ETHUSDC", 1.0, at=clock.time(), order_id="coord-stop-prices-ETHUSDC")
    with trailing_stop_alone(own_database, paper, clock, SETTINGS) as stops:
        first = elect(stops, own_database, "me#1")
        watching(stops)
        stops.tell(price(stops, PEAK))
        stops.clock.advance(0.25)
        wait_for(
            lambda: stored_peak(own_database) == pytest.approx(PEAK), message="the peak stored"
        )
        stops.tell(LeadershipLost(token=first, reason=LossReason.EXPIRED))
        wait_for(lambda: rows(stops) == (), message="the stops dropped")

        stops.tell(price(stops, UNDER_THE_TRAIL))  # heard while following
        stops.clock.advance(heard_ago)
        stops.clock.settle()
        assert not any(isinstance(m, ExitPosition) for m in told_meanwhile(stops, "validator-0"))

        second = take_lease(own_database, "me#2", now=stops.clock.time() + 61, lease=first.name)
        stops.tell(LeaderElected(token=second))
        stops.clock.advance(0.25)  # the Portfolio shows the holding again
        wait_for(
            lambda: stops.ask(GetTrailingStops()).positions_fetched_at is not None,
            message="the holding shown again",
        )
        if heard_ago < 90:
            exit = stops.told("validator-0", ExitPosition)
            assert exit.price == pytest.approx(UNDER_THE_TRAIL) and exit.fence == second
        else:
            stops.clock.settle()
            assert not any(
                isinstance(m, ExitPosition) for m in told_meanwhile(stops, "validator-0")
            ), "a stale price decides nothing"
            # The next fresh price still decides.
            stops.tell(price(stops, UNDER_THE_TRAIL))
            assert stops.told("validator-0", ExitPosition).fence == second


BTC = PRICES["BTCUSDC"]


def stored_peaks(dsn: str) -> dict[str, float]:
    store = StopStore(dsn, timeout=5)
    try:
        return {r["symbol"]: r["peak"] for r in store.open_stops()}
    finally:
        store.close()


def market_data(dsn: str, candles: list[tuple[str, str, float, float]]) -> None:
    """RootTrading's ``market_data``, with (symbol, timeframe, open time, close) rows."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            """CREATE TABLE IF NOT EXISTS market_data (time timestamptz, symbol text,
                   timeframe text, open double precision, high double precision,
                   low double precision, close double precision, volume double precision)"""
        )
        for symbol, timeframe, opened, close in candles:
            cur.execute(
                "INSERT INTO market_data VALUES (to_timestamp(%s), %s, %s, %s, %s, %s, %s, 1)",
                (opened, symbol, timeframe, close, close, close, close),
            )
    conn.close()


def row_of(stops: Solo, symbol: str) -> dict[str, Any] | None:
    return next((r for r in rows(stops) if r["symbol"] == symbol), None)


@pytest.mark.parametrize(
    ("candles", "exits"),
    [
        # A 1m candle that closed 10 s ago, under the trail: the price now.
        ([("1m", -70.0, UNDER_THE_TRAIL), ("5m", -310.0, PEAK)], True),
        # The newest close decides, whatever the timeframe: back above the stop.
        ([("1m", -130.0, UNDER_THE_TRAIL), ("5m", -305.0, PEAK)], False),
        # Closed 100 s ago: older than STOP_PRICE_MAX_AGE, no price.
        ([("1m", -160.0, UNDER_THE_TRAIL)], False),
        # Still in progress (it closes in 30 s): no price.
        ([("1m", -30.0, ENTRY * 0.90)], False),
    ],
    ids=["closed-under-the-stop", "newer-close-above", "stale", "in-progress"],
)
def test_a_new_process_decides_on_the_last_close_stored_in_market_data(
    own_database: str,
    paper: PaperExchange,
    candles: list[tuple[str, float, float]],
    exits: bool,
) -> None:
    """The process that watched the stop ended; while none ran, the price fell through
    it and RootTrading stored the candle. The next process, elected, exits on that
    close once the Portfolio shows the holding, without waiting for the next candle.
    A second holding (BTCUSDC, a fresh close at its entry) shows when the read is in."""
    clock = entries_behind()
    buy_at(paper, "ETHUSDC", 1.0, at=clock.time(), order_id="coord-stop-prices-ETHUSDC")
    buy_at(paper, "BTCUSDC", 0.01, at=clock.time(), order_id="coord-stop-prices-BTCUSDC")
    with trailing_stop_alone(own_database, paper, clock, SETTINGS) as first:
        token = elect(first, own_database, "me#1")
        first.clock.advance(0.25)  # the first tick as leader fetches the positions
        wait_for(lambda: len(rows(first)) == 2, message="both holdings watched")
        first.tell(price(first, PEAK))
        first.clock.advance(0.25)
        wait_for(
            lambda: stored_peaks(own_database).get("ETHUSDC") == pytest.approx(PEAK),
            message="the peak stored",
        )
        first.tell(LeadershipLost(token=token, reason=LossReason.RELEASED))
        wait_for(lambda: rows(first) == (), message="the stops dropped")

    now = clock.time() + 120  # restarted two minutes later
    stored = [("ETHUSDC", tf, now + ago, close) for tf, ago, close in candles]
    market_data(own_database, [*stored, ("BTCUSDC", "1m", now - 65.0, BTC)])
    with trailing_stop_alone(own_database, paper, ManualClock(wall=now), SETTINGS) as second:
        elected = elect(second, own_database, "me#2")
        wait_for(
            lambda: (row := row_of(second, "BTCUSDC")) is not None and row["last_price"] == BTC,
            message="the stored closes read",
        )
        assert row_of(second, "ETHUSDC") is not None
        second.clock.advance(0.25)  # the Portfolio shows the holdings
        if exits:
            exit = second.told("validator-0", ExitPosition)
            assert exit.symbol == "ETHUSDC" and exit.price == pytest.approx(UNDER_THE_TRAIL)
            assert exit.fence == elected
            return
        wait_for(
            lambda: second.ask(GetTrailingStops()).positions_fetched_at is not None,
            message="the holdings shown",
        )
        second.clock.settle()
        assert not any(isinstance(m, ExitPosition) for m in told_meanwhile(second, "validator-0"))
        # A fresh price under the stop still exits.
        second.tell(price(second, UNDER_THE_TRAIL))
        assert second.told("validator-0", ExitPosition).symbol == "ETHUSDC"


@pytest.mark.parametrize("heard", ["after the purchase", "before the purchase"])
def test_a_holding_adopted_under_its_stop_is_decided_on_the_price_heard_since_its_entry(
    own_database: str, paper: PaperExchange, heard: str
) -> None:
    """Bought (by hand, say), then the price fell under where its stop-loss will be:
    the holding exits once the Portfolio shows it, not at the next price. A price from
    before the purchase says nothing of the holding: it decides nothing."""
    # The paper exchange stamps the entry with its own time, the real one: the price is
    # heard on a clock a minute ahead of it, or a minute behind.
    ahead = 60.0 if heard == "after the purchase" else -60.0
    clock = ManualClock(wall=time.time() + ahead)
    with trailing_stop_alone(own_database, paper, clock, SETTINGS) as stops:
        token = elect(stops, own_database, "me#1")
        stops.clock.advance(0.25)  # the first fetch: nothing held
        wait_for(
            lambda: stops.ask(GetTrailingStops()).positions_fetched_at is not None,
            message="the first fetch",
        )
        buy_at(paper, "ETHUSDC", 1.0, at=clock.time(), order_id="coord-stop-adopted-ETHUSDC")
        stops.tell(price(stops, ENTRY * 0.90))  # under a 5 % stop-loss from the entry
        stops.clock.advance(10)  # the next fetch shows the holding
        if heard == "after the purchase":
            exit = stops.told("validator-0", ExitPosition)
            assert exit.symbol == "ETHUSDC" and exit.price == pytest.approx(ENTRY * 0.90)
            assert exit.fence == token
            return
        (row,) = wait_for(lambda: rows(stops), message="the holding adopted")
        # Decided in the adoption's own step: neither taken as its price, nor an exit begun.
        assert row["last_price"] is None and row["state"] == "watching", row
        stops.clock.settle()
        assert not any(isinstance(m, ExitPosition) for m in told_meanwhile(stops, "validator-0"))
