"""The stop lifecycle as a pure state machine: examples of each path (the model-based
test in test_stop_lifecycle_model.py checks the invariants over random runs)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.stop_book import (
    Holding,
    carry_over,
    exit_prefixes,
    find_rekeyed,
    from_record,
    same_holding,
)
from coordinator.trading.stop_restore import restore
from coordinator.trading.stops import StopParams, open_stop

PARAMS = lc.LifecycleParams(exit_timeout=60, exit_settle=90, retry_base=1, retry_max=8)
STOP, ENTRY = 95.0, 100.0


def run(
    life: lc.Lifecycle, event: lc.StopEvent, *, now: float = 0.0, price: float | None = 94.0
) -> tuple[lc.Lifecycle, tuple[lc.Action, ...]]:
    return lc.step(life, event, now=now, price=price, stop=STOP, entry=ENTRY, params=PARAMS)


def exiting(attempt: int = 1) -> lc.Lifecycle:
    return lc.Lifecycle(phase=lc.Phase.EXITING, attempt=attempt, sent_at=0.0, clean=True)


def rejected(reason: str, attempt: int = 1) -> lc.Decided:
    return lc.Decided(attempt=attempt, outcome=lc.ExitOutcome.REJECTED, reason=reason, detail="")


def test_a_first_hit_of_a_clean_holding_sends_at_once_and_only_on_a_fresh_price():
    life = lc.Lifecycle(clean=True)
    assert run(life, lc.Tick(), price=None) == (life, ())
    assert run(life, lc.Tick(), price=96.0) == (life, ())
    sent, actions = run(life, lc.Tick())
    assert sent.phase is lc.Phase.EXITING and sent.attempt == 1
    assert actions == (lc.SendExit(attempt=1, price=94.0),)
    # One in flight: more ticks send nothing.
    assert run(sent, lc.Tick())[1] == ()


def test_a_holding_with_history_reads_its_earlier_orders_before_any_attempt():
    life = lc.Lifecycle(clean=False)
    checking, actions = run(life, lc.Tick())
    assert checking.phase is lc.Phase.CHECKING and actions == (lc.ReadOrders(),)
    assert run(checking, lc.Tick()) == (checking, ())
    none = lc.OrdersRead(orders=())
    sent, actions = run(checking, none)
    assert actions == (lc.SendExit(attempt=1, price=94.0),) and sent.phase is lc.Phase.EXITING
    # Read while the price went back up or went stale: nothing sent.
    assert run(checking, none, price=97.0)[0].phase is lc.Phase.WATCHING
    stale, actions = run(checking, none, price=None)
    assert stale.phase is lc.Phase.RETRY and actions == ()


def test_an_unknown_outcome_waits_for_its_order_until_it_is_settled():
    waiting, actions = run(
        exiting(),
        lc.Decided(attempt=1, outcome=lc.ExitOutcome.UNKNOWN, reason="order_unknown", detail=""),
    )
    assert waiting.phase is lc.Phase.AWAITING_ORDER
    assert lc.ReadOrders() in actions and any(isinstance(a, lc.Alert) for a in actions)
    # Time passing (past any settle time) only reads the order again.
    assert run(waiting, lc.Timer(), now=1_000.0) == (waiting, (lc.ReadOrders(),))
    unknown = lc.OrderSeen(client_order_id="coord-1", state="unknown", attempt=1)
    still, actions = run(waiting, lc.OrdersRead(orders=(unknown,)), now=1_000.0)
    assert still.phase is lc.Phase.AWAITING_ORDER and still.waiting_on == "coord-1"
    assert actions == ()
    # Reconciled as rejected: the next attempt, on a fresh price still under the stop.
    gone = replace(unknown, state="rejected")
    retried, actions = run(still, lc.OrdersRead(orders=(gone,)))
    assert actions == (lc.SendExit(attempt=2, price=94.0),) and retried.attempt == 2
    # Reconciled as filled: sold, nothing more.
    filled = replace(unknown, state="accepted")
    sold, actions = run(still, lc.OrdersRead(orders=(filled,)))
    assert sold.phase is lc.Phase.SOLD and actions == ()


def test_another_holdings_unsettled_exit_of_the_symbol_holds_the_attempt_too():
    checking = lc.Lifecycle(phase=lc.Phase.CHECKING, attempt=1)
    other = lc.OrderSeen(client_order_id="coord-9", state="sent", attempt=None)
    waiting, actions = run(checking, lc.OrdersRead(orders=(other,)))
    assert waiting.phase is lc.Phase.AWAITING_ORDER and actions == ()


def test_unreadable_orders_send_nothing():
    checking = lc.Lifecycle(phase=lc.Phase.CHECKING, attempt=1)
    after, actions = run(checking, lc.OrdersRead(orders=(), error="database down"))
    assert after.phase is lc.Phase.RETRY and actions == ()
    waiting = lc.Lifecycle(phase=lc.Phase.AWAITING_ORDER, attempt=1)
    assert run(waiting, lc.OrdersRead(orders=(), error="down")) == (waiting, ())


def test_dust_ends_the_stop_without_retries():
    dust, actions = run(exiting(), rejected("dust_remainder"))
    assert dust.phase is lc.Phase.DUST and actions == ()
    for event in (lc.Timer(), lc.Tick(), lc.PositionsSeen(held=True)):
        after, actions = run(dust, event, now=10_000.0)
        assert after.phase is lc.Phase.DUST and actions == ()
    assert run(dust, lc.PositionsSeen(held=False))[0].phase is lc.Phase.DUST
    closed = run(run(dust, lc.PositionsSeen(held=False))[0], lc.PositionsSeen(held=False))[0]
    assert closed.phase is lc.Phase.CLOSED


@pytest.mark.parametrize("reason", ["position_changed", "no_position"])
def test_a_changed_position_is_examined_again_and_closed_if_gone(reason):
    retry, actions = run(exiting(), rejected(reason))
    assert retry.phase is lc.Phase.RETRY and lc.FetchPositions() in actions
    closed, _ = run(retry, lc.PositionsSeen(held=False))
    assert closed.phase is lc.Phase.CLOSED
    kept, _ = run(retry, lc.PositionsSeen(held=True))
    assert kept.phase is lc.Phase.RETRY and kept.missing == 0


def test_older_and_repeated_outcomes_do_not_move_the_current_attempt():
    current = exiting(attempt=3)
    assert run(current, rejected("trader_rejected", attempt=2)) == (current, ())
    sold, _ = run(
        current, lc.Decided(attempt=3, outcome=lc.ExitOutcome.ACCEPTED, reason=None, detail="")
    )
    for late in (rejected("x", attempt=3), rejected("x", attempt=1)):
        assert run(sold, late)[0] is sold


def test_our_own_sell_ends_the_stop_and_a_still_shown_holding_is_watched_again_later():
    life = lc.Lifecycle(clean=True, seen_at=0.0)
    sold, _ = run(life, lc.OwnSellFilled(detail="sell signal"), now=10.0)
    assert sold.phase is lc.Phase.SOLD
    assert run(sold, lc.Tick())[1] == ()
    shown, _ = run(sold, lc.PositionsSeen(held=True), now=50.0)
    assert run(shown, lc.Timer(), now=50.0)[0].phase is lc.Phase.SOLD
    shown, _ = run(shown, lc.PositionsSeen(held=True), now=200.0)
    again, actions = run(shown, lc.Timer(), now=200.0)
    assert again.phase is lc.Phase.WATCHING and any(isinstance(a, lc.Alert) for a in actions)
    # Its next hit reads the stored orders first.
    assert run(again, lc.Tick())[1] == (lc.ReadOrders(),)


def test_a_lost_exit_is_sent_again_under_its_own_id_once_then_retried():
    """Lost on the way (its Validator crashed with it): the same exit again, so that the
    signal stored for it is decided (an order already claimed for it is never sent
    twice: the Validator finds it and decides it unknown), and on a fresh price only."""
    looking, actions = run(exiting(), lc.Timer(), now=61.0)
    assert actions == (lc.LookUpDecision(attempt=1),) and looking.lookup_pending
    stale, actions = run(looking, lc.DecisionMissing(attempt=1), now=61.0, price=None)
    assert actions == () and stale.phase is lc.Phase.EXITING and not stale.lookup_pending
    again, actions = run(stale, lc.DecisionMissing(attempt=1), now=130.0)
    assert actions == (lc.SendExit(attempt=1, price=94.0),)
    assert again.phase is lc.Phase.EXITING and again.attempt == 1 and again.sent_at == 130.0
    looking, _ = run(again, lc.Timer(), now=191.0)
    retry, actions = run(looking, lc.DecisionMissing(attempt=1), now=191.0)
    assert retry.phase is lc.Phase.RETRY and actions == ()
    checking, actions = run(retry, lc.Timer(), now=200.0)
    assert checking.phase is lc.Phase.CHECKING and actions == (lc.ReadOrders(),)


def test_restored_stops_wait_for_the_portfolio_and_read_their_orders():
    life, actions = restore("exiting", 2, 1, now=5.0)
    assert life.phase is lc.Phase.EXITING and actions == (lc.LookUpDecision(attempt=2),)
    life, actions = restore("exit_unknown", 1, 0, now=5.0)
    assert life.phase is lc.Phase.AWAITING_ORDER and actions == (lc.ReadOrders(),)
    life, _ = restore("watching", 0, 0, now=5.0)
    assert not life.confirmed and not life.clean
    assert run(life, lc.Tick())[1] == ()
    confirmed, actions = run(life, lc.PositionsSeen(held=True))
    assert confirmed.confirmed and actions == (lc.ReadOrders(),)
    with pytest.raises(ValueError, match="unknown stop state 'bogus'"):
        restore("bogus", 0, 0, now=5.0)


# --- keys -----------------------------------------------------------------------------

RULES = ("stoploss", "percent")
STOPS = StopParams()


def holding(key: str, quantity: float, entry: float, peak: float) -> Holding:
    return Holding(
        key=key,
        symbol="ETHUSDC",
        cycle_id=None,
        quantity=quantity,
        entry_time=None,
        rules=RULES,
        stop=open_stop(RULES, STOPS, entry, peak=peak),
        watched_at=0.0,
        updated_at=0.0,
        known_since=0.0,
        life=lc.Lifecycle(),
    )


def test_the_same_holding_is_the_same_symbol_quantity_and_a_close_entry():
    assert same_holding("A", 1.0, 100.0, "A", 1.0 + 1e-9, 100.3)
    assert not same_holding("A", 1.0, 100.0, "B", 1.0, 100.0)
    assert not same_holding("A", 1.0, 100.0, "A", 1.1, 100.0)
    assert not same_holding("A", 1.0, 100.0, "A", 1.0, 101.0)
    assert not same_holding("A", 1.0, 100.0, "A", float("nan"), 100.0)


def test_a_holding_opened_at_another_time_never_takes_a_watched_ones_stop():
    """Our SELL closed the watched holding and this stop did not hear of it; a BUY of
    the same size at the same price opened another: the Portfolio shows it opened at
    another time (its own cycle's creation), and it gets a stop of its own."""
    up = holding("ETHUSDC@1000.000@100", 2.0, 100.0, 110.0)
    up.entry_time = 1000.0
    assert find_rekeyed([up], "ETHUSDC", 2.0, 100.0, 1060.0) is None
    # The same opening (a cycle id seen now, say), or one not known: the same holding.
    assert find_rekeyed([up], "ETHUSDC", 2.0, 100.0, 1000.0000004) is up
    assert find_rekeyed([up], "ETHUSDC", 2.0, 100.0, None) is up
    up.entry_time = None
    assert find_rekeyed([up], "ETHUSDC", 2.0, 100.0, 1060.0) is up


def test_a_rekeyed_holding_keeps_its_stop_and_a_sold_one_is_never_taken_over():
    up = holding("cycle:1", 2.0, 100.0, 110.0)
    assert up.stop.stop == pytest.approx(107.8)
    assert find_rekeyed([up], "ETHUSDC", 2.0, 100.2) is up
    sold = holding("cycle:2", 2.0, 100.0, 110.0)
    sold.life = lc.Lifecycle(phase=lc.Phase.SOLD)
    assert find_rekeyed([sold], "ETHUSDC", 2.0, 100.0) is None
    twins = [holding("a", 2.0, 100.0, 100.0), holding("b", 2.0, 100.0, 100.0)]
    assert find_rekeyed(twins, "ETHUSDC", 2.0, 100.0) is None
    carry_over(
        up,
        key="ETHUSDC@-@99.8",
        cycle_id=None,
        entry=99.8,
        opened_at=None,
        quantity=2.0,
        params=STOPS,
    )
    assert up.key == "ETHUSDC@-@99.8" and up.aliases == ("cycle:1",)
    assert up.stop.peak == 110.0 and up.stop.stop == pytest.approx(107.8)
    assert up.attempt_of("exit:cycle:1:3") == 3 and up.attempt_of("exit:other:1") is None


def test_records_round_trip_and_exit_patterns_escape_like_wildcards():
    up = holding("cycle:a_b%", 2.0, 100.0, 110.0)
    up.life = lc.Lifecycle(phase=lc.Phase.AWAITING_ORDER, attempt=2, detail="waiting")
    restored, actions = from_record(up.record(), STOPS, now=1.0)
    assert restored.stop == up.stop and restored.life.attempt == 2
    assert restored.life.phase is lc.Phase.AWAITING_ORDER and actions == (lc.ReadOrders(),)
    assert exit_prefixes(["cycle:a_b%"]) == ["exit:cycle:a\\_b\\%:%"]


def test_an_exit_found_lost_before_any_price_is_sent_again_at_the_first_fresh_one():
    """After a failover the new leader restores the old leader's exits in flight and finds
    them undecided at once (the fence dropped them), before any price has come in: each
    is sent again on the first fresh price, not after the exit timeout."""
    life, actions = restore("exiting", 1, 0, now=5.0)
    assert actions == (lc.LookUpDecision(attempt=1),)
    life, _ = run(life, lc.PositionsSeen(held=True), now=5.1, price=None)
    life, actions = run(life, lc.DecisionMissing(attempt=1), now=5.2, price=None)
    assert actions == () and life.phase is lc.Phase.EXITING
    # The first tick of the timer with a fresh price, far from the exit timeout.
    life, actions = run(life, lc.Timer(), now=5.7, price=50.0)
    assert actions == (lc.SendExit(attempt=1, price=50.0),)
    assert life.resent
    # Sent once: the next ticks send nothing more.
    assert run(life, lc.Timer(), now=6.2, price=50.0)[1] == ()


def test_an_exit_found_lost_before_any_price_fails_over_to_a_retry_when_no_longer_hit():
    life, _ = restore("exiting", 1, 0, now=5.0)
    life, _ = run(life, lc.PositionsSeen(held=True), now=5.1, price=None)
    life, _ = run(life, lc.DecisionMissing(attempt=1), now=5.2, price=None)
    life, actions = run(life, lc.Timer(), now=5.7, price=120.0)
    assert actions == () and life.phase is lc.Phase.RETRY


_LIVES = st.builds(
    lc.Lifecycle,
    phase=st.sampled_from(lc.Phase),
    attempt=st.integers(0, 5),
    failures=st.integers(0, 5),
    sent_at=st.none() | st.floats(0, 1000),
    retry_at=st.none() | st.floats(0, 1000),
    confirmed=st.booleans(),
    clean=st.booleans(),
    sold_attempt=st.integers(0, 5),
    waiting_on=st.none() | st.just("c-1"),
    lookup_pending=st.booleans(),
    resent=st.booleans(),
    resend_on_price=st.booleans(),
    missing=st.integers(0, 3),
    seen_at=st.none() | st.floats(0, 1000),
)


@given(_LIVES, st.floats(0, 2000), st.none() | st.floats(1, 200))
def test_the_timer_changes_nothing_outside_the_timed_phases(life, now, price):
    """The TrailingStop steps only the stops in TIMED_PHASES on its timer."""
    assume(life.phase not in lc.TIMED_PHASES)
    assert run(life, lc.Timer(), now=now, price=price) == (life, ())


@given(_LIVES, st.floats(0, 2000), st.none() | st.floats(1, 200))
def test_a_fetch_showing_a_confirmed_unmissed_holding_changes_only_when_sold(life, now, price):
    """Most of each fetch: nothing new to take (seen_at is read in SOLD alone)."""
    life = replace(life, confirmed=True, missing=0)
    after, actions = run(life, lc.PositionsSeen(held=True), now=now, price=price)
    assert actions == ()
    if life.phase is lc.Phase.SOLD:
        assert after == replace(life, seen_at=now)
    else:
        assert after is life and life.seen_unchanged
