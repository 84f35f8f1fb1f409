"""The TrailingStop follows the leader lease: a follower watches nothing; elected, it
restores the stored stops and fires on a drop under the stored peak's stop; lost, it
sends nothing more; a write refused by the fence puts it to sleep at once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from coordinator.actors.trailing_stop import TrailingStop
from coordinator.clock import ManualClock
from coordinator.cluster.lease import Belief, LossReason, Role
from coordinator.config import load_config
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.infra.stop_store import StopStore
from coordinator.messages.leadership import (
    GetLeadership,
    LeaderElected,
    LeadershipLost,
    LeadershipSnapshot,
)
from coordinator.messages.ledger import PositionsSeen
from coordinator.messages.pipeline import PricesUpdated, PriceUpdated
from coordinator.messages.stops import ExitPosition, GetTrailingStops, StopsSource
from tests.actors.conftest import buy_at, elect, take_lease, trailing_stop_alone
from tests.pipeline import PRICES
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for

ENTRY = PRICES["ETHUSDC"]
PEAK = ENTRY * 1.10
UNDER_THE_TRAIL = PEAK * 0.97  # under the 2 % trail of the peak, well over the stop-loss


@pytest.fixture
def follower(own_database: str, paper: PaperExchange) -> Iterator[Solo]:
    clock = ManualClock()
    buy_at(paper, "ETHUSDC", 1.0, at=clock.time(), order_id="coord-stop-leader-ETHUSDC")
    settings = {
        "POSITIONS_REFRESH_INTERVAL": "10",
        "STOP_RULES": "stoploss,percent",
        "STOP_LOSS_PERCENT": "5",
        "TRAILING_STOP_PERCENT": "2",
        "TRAILING_STOP_OFFSET_PERCENT": "1",
    }
    with trailing_stop_alone(own_database, paper, clock, settings) as s:
        yield s


def price(stops: Solo, value: float) -> PricesUpdated:
    update = PriceUpdated(
        symbol="ETHUSDC",
        price=value,
        at=stops.clock.time(),
        received_mono=stops.clock.monotonic(),
    )
    return PricesUpdated(updates=(update,))


def rows(stops: Solo) -> tuple[Any, ...]:
    return stops.ask(GetTrailingStops()).positions


def told_meanwhile(stops: Solo, other: str) -> list[Any]:
    """What the stand-in ``other`` was told up to now: the actor has handled everything
    told to it before (an ask waits behind it), and the stand-in too."""
    stops.ask(GetTrailingStops())
    return stops.taken(other)


def stored_peak(dsn: str) -> float | None:
    store = StopStore(dsn, timeout=5)
    try:
        return max((r["peak"] for r in store.open_stops()), default=None)
    finally:
        store.close()


def watching(stops: Solo) -> None:
    stops.clock.advance(0.25)  # the first tick as leader fetches the positions
    wait_for(lambda: len(rows(stops)) == 1, message="the position's stop")


def test_a_follower_fetches_nothing_watches_nothing_and_sends_no_exit(follower: Solo) -> None:
    for _ in range(3):
        follower.clock.advance(0.25)
    follower.clock.settle()  # its ticks told, so handled before what follows
    follower.tell(price(follower, ENTRY * 0.90))  # far under the stop-loss
    assert rows(follower) == ()
    assert not any(isinstance(m, PositionsSeen) for m in told_meanwhile(follower, "ledger"))
    assert not any(isinstance(m, ExitPosition) for m in told_meanwhile(follower, "validator-0"))


def test_elected_it_restores_the_stored_peak_and_fires_lost_it_sends_nothing(
    follower: Solo, own_database: str
) -> None:
    first = elect(follower, own_database, "me#1")
    watching(follower)
    follower.tell(price(follower, PEAK))
    follower.clock.advance(0.25)
    wait_for(lambda: stored_peak(own_database) == pytest.approx(PEAK), message="the peak stored")

    follower.tell(LeadershipLost(token=first, reason=LossReason.EXPIRED))
    wait_for(lambda: rows(follower) == (), message="the stops dropped")
    follower.tell(price(follower, UNDER_THE_TRAIL))
    follower.tell(price(follower, ENTRY * 0.90))
    follower.clock.advance(0.25)
    follower.clock.settle()
    assert not any(isinstance(m, ExitPosition) for m in told_meanwhile(follower, "validator-0"))

    # Elected again (a new term): the stop comes back from the store with its peak.
    second = take_lease(own_database, "me#2", now=follower.clock.time() + 61, lease=first.name)
    follower.tell(LeaderElected(token=second))
    (row,) = rows(follower)
    assert row["peak"] == pytest.approx(PEAK)
    follower.clock.advance(0.25)  # the Portfolio shows it again: it may exit
    wait_for(
        lambda: follower.ask(GetTrailingStops()).positions_fetched_at is not None,
        message="the position shown again",
    )
    follower.tell(price(follower, UNDER_THE_TRAIL))
    exit = follower.told("validator-0", ExitPosition)
    assert exit.symbol == "ETHUSDC" and exit.fence == second
    assert exit.stop == pytest.approx(PEAK * 0.98)


def test_a_write_refused_by_the_fence_puts_it_to_sleep_with_one_warning(
    follower: Solo, own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="coordinator.actors.trailing_stop")
    token = elect(follower, own_database, "me#1")
    watching(follower)
    follower.clock.advance(0.25)
    wait_for(lambda: stored_peak(own_database) is not None, message="the stop stored")
    # Our lease lapsed (a pause) and another instance took it over.
    take_lease(own_database, "other#1", now=follower.clock.time() + 61, lease=token.name)
    follower.tell(price(follower, PEAK))  # a change, written at the next flush: refused

    def dropped() -> bool:
        # A flush due while the first one has not yet reported back is skipped, by
        # design: the clock moves on at each look until the refused write was tried.
        follower.clock.advance(0.25)
        return rows(follower) == ()

    wait_for(dropped, message="the stops dropped")
    assert stored_peak(own_database) == pytest.approx(ENTRY)
    follower.tell(price(follower, ENTRY * 0.90))
    follower.clock.advance(0.25)
    follower.clock.settle()
    assert not any(isinstance(m, ExitPosition) for m in told_meanwhile(follower, "validator-0"))
    dormant = [r for r in caplog.records if "dormant" in r.getMessage()]
    assert len(dormant) == 1 and dormant[0].levelno == logging.WARNING
    assert "fence refused" in dormant[0].getMessage()


def test_a_follower_answers_with_the_leaders_stops_as_stored(
    follower: Solo, own_database: str, paper: PaperExchange
) -> None:
    leader = follower
    token = elect(leader, own_database, "leader#1")
    watching(leader)
    leader.tell(price(leader, PEAK))
    leader.clock.advance(0.25)
    wait_for(lambda: stored_peak(own_database) == pytest.approx(PEAK), message="the peak stored")
    watched = leader.ask(GetTrailingStops(stored_if_following=True))
    assert (watched.source, watched.leader) == (StopsSource.WATCHING, "leader#1")

    def elector(message: Any) -> Any:
        """Its own elector, a follower of the lease the leader holds."""
        if not isinstance(message, GetLeadership):
            return None
        return LeadershipSnapshot(
            lease=token.name,
            holder="follower#1",
            role=Role.FOLLOWER,
            belief=Belief.FOLLOWER,
            generation=None,
            expires_in=None,
            elected=0,
            last_error=None,
            awaiting=False,
            ticks=1,
        )

    services = make_services(
        load_config({"VALIDATION_THREADS": "1"}),
        redis_url="redis://unused",
        database_dsn=own_database,
        portfolio_url=paper.url,
        clock=ManualClock(),
    )
    stand_ins = {"ledger": None, "validator-0": None, "leader_elector": elector}
    with solo(TrailingStop, "trailing_stop", services, stand_ins=stand_ins) as other:
        assert other.ask(GetTrailingStops()).positions == ()  # what it watches itself
        stored = other.ask(GetTrailingStops(stored_if_following=True))
    assert (stored.leading, stored.source, stored.leader) == (False, StopsSource.STORE, "leader#1")
    (row,) = stored.positions
    (live,) = watched.positions
    assert row["peak"] == pytest.approx(PEAK) and row["stop"] == pytest.approx(live["stop"])
    assert set(row) == set(live) | {"stored_at"}
    for same in ("position_key", "symbol", "quantity", "entry_price", "stop_rule", "state"):
        assert row[same] == live[same], same
    assert row["last_price"] is None and stored.active == 1
