"""The cluster drill's checks on known records, and the Trader stub's book: each
violation found, each allowed case not. No process, no server."""

from __future__ import annotations

import json

import pytest

from bench.cluster_checks import (
    Deciders,
    Published,
    StubOrder,
    check_client_ids_once,
    check_decided_once,
    check_failover,
    check_leadership_moves,
    check_one_decider,
    check_paused_writes,
    check_peaks,
    check_sold_once,
    check_stop_coverage,
    check_throughput,
    extra_decisions,
    fence_refusals,
    first_evaluation,
    leadership_events,
)
from bench.trader_stub import StubBook


def log_line(msg: str, level: str = "warning", ts: str = "2026-12-02T06:00:00.000+00:00") -> str:
    return json.dumps({"ts": ts, "level": level, "msg": msg})


def sell(symbol: str, status: int = 201, client_id: str = "", wall: float = 1.0) -> StubOrder:
    return StubOrder(wall, client_id or f"c-{symbol}-{status}", symbol, "SELL", status)


PUBLISHED = [Published("a", "stream"), Published("b", "pubsub"), Published("c", "pubsub")]


def test_every_signal_needs_one_stored_decision() -> None:
    assert check_decided_once(PUBLISHED, {"a": 1, "b": 1, "c": 1}).passed
    missing = check_decided_once(PUBLISHED, {"a": 1, "b": 1})
    assert not missing.passed
    assert "1 missing (e.g. c)" in missing.numbers


def test_decisions_dropped_as_already_stored_count_as_decisions_of_their_instance() -> None:
    deciders = Deciders()
    for signal_id in ("a", "b", "c"):
        deciders.add(signal_id, "drill-1")
    lines = [
        log_line("decision for b was already stored; this one dropped"),
        log_line("c was decided elsewhere meanwhile; this decision dropped", "error"),
        log_line("stop of P0001USDC@1@100 closed: sold", "info"),
        "Traceback (most recent call last): dropped",
        log_line("decision for x was already stored; this one was not dropped"),
    ]
    assert extra_decisions("drill-2", lines, deciders) == 2
    assert check_one_decider(PUBLISHED, deciders, "stream").passed
    pubsub = check_one_decider(PUBLISHED, deciders, "pubsub")
    assert not pubsub.passed
    assert "2 decision(s): 2" in pubsub.numbers
    assert "2 instance(s): 2" in pubsub.numbers


def test_a_client_order_id_received_twice_is_found() -> None:
    orders = [sell("P1USDC", client_id="x"), sell("P2USDC", client_id="y")]
    assert check_client_ids_once(orders).passed
    again = check_client_ids_once([*orders, sell("P1USDC", 422, client_id="x")])
    assert not again.passed
    assert "1 received more than once (e.g. x)" in again.numbers
    assert not check_client_ids_once([StubOrder(1.0, "", "P1USDC", "SELL", 201)]).passed


def test_each_position_sold_once_and_a_refused_second_sell_counts() -> None:
    held = ["P1USDC", "P2USDC"]
    assert check_sold_once([sell("P1USDC"), sell("P2USDC"), sell("S1USDC")], held).passed
    assert not check_sold_once([sell("P1USDC")], held).passed  # P2 never sold
    twice = [sell("P1USDC"), sell("P2USDC"), sell("P1USDC", client_id="again")]
    assert "1 sold twice" in check_sold_once(twice, held).numbers
    refused = check_sold_once([sell("P1USDC"), sell("P2USDC"), sell("P2USDC", 422)], held)
    assert not refused.passed
    assert "1 with a SELL refused" in refused.numbers


def test_the_first_evaluation_is_the_first_row_moved_above_its_peak_after_the_loss() -> None:
    before = {"k1": 101.0, "k2": 102.0}
    after = [
        ("k1", 101.0, 10.5),  # written after the loss, peak unchanged: a restore, not a tick
        ("k2", 102.5, 9.9),  # before the loss: the old leader's
        ("k2", 102.6, 11.2),
        ("k3", 100.0, 10.8),  # not stored at the loss: any peak is new
    ]
    assert first_evaluation(10.0, before, after) == 10.8
    assert first_evaluation(10.0, before, after[:2]) is None


def test_failover_median_against_the_target_and_a_fault_never_recovered() -> None:
    assert check_failover([("kill 1", 1.5), ("kill 2", 2.5), ("pause", 1.8)], 2.0).passed
    assert not check_failover([("kill 1", 2.5), ("pause", 2.1)], 2.0).passed
    never = check_failover([("kill 1", 1.0), ("pause", None)], 2.0)
    assert not never.passed
    assert "pause -" in never.numbers
    assert not check_failover([], 2.0).passed


def test_a_position_unwatched_past_the_failover_is_found() -> None:
    failovers = {"kill 1": 1.5}
    assert check_stop_coverage({"kill 1": {"P1": 1.2, "P2": 1.55}}, failovers, 0.1).passed
    assert not check_stop_coverage({"kill 1": {"P1": 1.2, "P2": 1.7}}, failovers, 0.1).passed
    never = check_stop_coverage({"kill 1": {"P1": 1.2, "P2": None}}, failovers, 0.1)
    assert not never.passed
    assert "(e.g. P2)" in never.numbers
    assert not check_stop_coverage({"kill 1": {"P1": 1.0}}, {"kill 1": None}, 0.1).passed


def test_peaks_must_equal_the_highest_tick_before_the_fault() -> None:
    expected = {"P1": 105.0, "P2": 103.0}
    assert check_peaks("kill 1", expected, {"P1": 105.0, "P2": 103.0 * (1 + 1e-12)}).passed
    lower = check_peaks("kill 1", expected, {"P1": 104.9, "P2": 103.0})
    assert not lower.passed
    assert "1 lower (e.g. P1)" in lower.numbers
    assert not check_peaks("kill 1", expected, {"P1": 105.0, "P2": 103.5}).passed
    assert not check_peaks("kill 1", expected, {"P1": 105.0}).passed


def test_a_paused_ex_leader_may_write_nothing_after_it_resumed() -> None:
    stored = [("drill-2", "exit-a", 5.0), ("drill-3", "exit-b", 12.0)]
    arrivals = [StubOrder(5.1, "exit-a", "P1", "SELL", 201)]
    assert check_paused_writes("drill-2", 10.0, stored, arrivals).passed
    late = [*stored, ("drill-2", "exit-c", 10.5)]
    reached = [*arrivals, StubOrder(10.6, "exit-c", "P2", "SELL", 201)]
    verdict = check_paused_writes("drill-2", 10.0, late, reached)
    assert not verdict.passed
    assert "1 exit orders stored, 1 reaching the stub" in verdict.numbers
    # Elected again at 10.4 s: its exits from then on are a leader's.
    assert check_paused_writes("drill-2", 10.0, late, reached, until=10.4).passed


def at(second: int) -> str:
    return f"2026-12-02T06:00:{second:02d}.000+00:00"


def test_a_term_lost_without_a_fault_is_a_leadership_move_too_many() -> None:
    one = [
        log_line("leader: lease leader taken at generation 1", "info", at(1)),
        log_line(
            "trailing stops dormant (no longer leader at generation 3): leadership expired",
            ts=at(30),
        ),
    ]
    two = [
        log_line("leader: lease leader taken at generation 2", "info", at(10)),
        log_line(
            "trailing stops dormant (no longer leader at generation 2): leadership expired",
            ts=at(20),
        ),
        log_line("leader: lease leader taken at generation 3", "info", at(21)),
    ]
    events = leadership_events("drill-1", one) + leadership_events("drill-2", two)
    assert [(e.instance, e.generation, e.why) for e in events] == [
        ("drill-1", 1, "taken"),
        ("drill-1", 3, "leadership expired"),
        ("drill-2", 2, "taken"),
        ("drill-2", 2, "leadership expired"),
        ("drill-2", 3, "taken"),
    ]
    assert check_leadership_moves(events, 2).passed
    flapped = check_leadership_moves(events, 1)
    assert not flapped.passed
    assert "2 handovers for 1 leader faults" in flapped.numbers
    assert "06:00:20.000 drill-2 gen 2: leadership expired" in flapped.numbers


def test_fence_refusals_are_counted_from_the_resume_on() -> None:
    refused = (
        "trailing stops dormant (no longer leader at generation 3): the fence refused a "
        "write of the stops: lease leader lost"
    )
    lines = [log_line(refused, ts=at(5)), log_line(refused, ts=at(12)), log_line("fence refused")]
    assert fence_refusals(lines, at(10)) == 1


def test_throughput_of_the_most_instances_against_one() -> None:
    assert check_throughput([(1, 100.0, 90.0), (2, 120.0, 95.0), (3, 101.0, 80.0)]).passed
    assert not check_throughput([(1, 100.0, 90.0), (3, 99.0, 80.0)]).passed
    assert not check_throughput([(1, 100.0, 90.0)]).passed
    assert not check_throughput([]).passed


# --- the stub's book ------------------------------------------------------------------


def order_body(symbol: str, side: str, quantity: float, client_id: str, price: float) -> bytes:
    metadata = {"client_order_id": client_id, "reference_price": price}
    return json.dumps(
        {"symbol": symbol, "side": side, "quantity": quantity, "price": None, "metadata": metadata}
    ).encode()


def test_the_stub_fills_a_sell_within_the_holding_and_refuses_one_beyond_it() -> None:
    book = StubBook(1000.0)
    assert book.seed([{"symbol": "P1USDC", "quantity": 2, "entry_price": 100}]) == 1
    status, answer = book.order(order_body("P1USDC", "SELL", 1.5, "c1", 90.0), 1.0, 2.0)
    assert status == 201 and answer["order_id"].startswith("order_")
    status, answer = book.order(order_body("P1USDC", "SELL", 1.0, "c2", 90.0), 1.1, 2.1)
    assert status == 422
    assert "held 0.5" in answer["error"]
    assert book.order(order_body("P1USDC", "SELL", 0.5, "c3", 90.0), 1.2, 2.2)[0] == 201
    assert book.active_positions() == []
    assert book.balances() == [
        {"asset": "USDC", "free": 1180.0, "locked": 0.0, "total": 1180.0, "value_usdc": 1180.0}
    ]
    recorded = book.recorded(1)
    assert [(r["client_order_id"], r["status"], r["wall"]) for r in recorded] == [
        ("c2", 422, 2.1),
        ("c3", 201, 2.2),
    ]


def test_the_stub_buys_with_its_quote_balance_and_averages_the_entry() -> None:
    book = StubBook(1000.0)
    assert book.order(order_body("S1USDC", "BUY", 2, "b1", 100.0), 0, 0)[0] == 201
    assert book.order(order_body("S1USDC", "BUY", 6, "b2", 150.0), 0, 0)[0] == 422
    assert book.order(order_body("S1USDC", "BUY", 2, "b3", 200.0), 0, 0)[0] == 201
    (position,) = book.active_positions()
    assert position["quantity"] == 4 and position["entry_price"] == pytest.approx(150.0)
    assert [r["asset"] for r in book.balances()] == ["USDC", "S1"]
    assert book.stats()["by_status"] == {"201": 2, "422": 1}
    assert [o["id"] for o in book.trader_orders(1)] == [book.filled[-1]["id"]]


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"not json", 400, "manquants"),
        (b'{"symbol": "P1USDC"}', 400, "manquants"),
        (order_body("P1USDC", "HOLD", 1, "x", 1.0), 422, "side must be BUY or SELL"),
        (order_body("P1BTC", "BUY", 1, "x", 1.0), 422, "symbol must be a string ending in USDC"),
        (order_body("P1USDC", "BUY", -1, "x", 1.0), 422, "quantity must be a number > 0"),
    ],
)
def test_the_stub_names_what_is_wrong_with_a_bad_order(raw: bytes, status: int, words: str) -> None:
    book = StubBook(1000.0)
    answer_status, answer = book.order(raw, 0.0, 0.0)
    assert answer_status == status
    assert words in answer["error"]
    assert book.recorded(0)[0]["status"] == status


def test_the_stub_refuses_a_bad_seed_naming_the_position_and_field() -> None:
    book = StubBook(1000.0)
    with pytest.raises(ValueError, match="position 1: no field 'entry_price'"):
        book.seed(
            [
                {"symbol": "P1USDC", "quantity": 1, "entry_price": 1},
                {"symbol": "P2USDC", "quantity": 1},
            ]
        )
    with pytest.raises(ValueError, match="position 0: quantity must be a number > 0"):
        book.seed([{"symbol": "P1USDC", "quantity": 0, "entry_price": 1}])
    assert book.active_positions() == []


def test_the_stubs_sell_closes_the_position_and_leaves_what_it_did_not_sell_as_dust() -> None:
    """As RootTrading: a SELL closes every open cycle of the symbol whatever it sold, so
    /positions/active never shows a remainder; the remainder stays in /balances. (The
    stub kept a position of the remainder: the pipeline benchmark's next BUY of the
    symbol was refused position_already_open, and its SELL dust_remainder.)"""
    book = StubBook(10_000.0)
    assert book.order(order_body("S1USDC", "BUY", 100, "b1", 10.0), 0, 0)[0] == 201
    assert book.order(order_body("S1USDC", "SELL", 99.9, "s1", 10.0), 0, 0)[0] == 201
    assert book.active_positions() == []
    dust = {r["asset"]: r["free"] for r in book.balances()}["S1"]
    assert dust == pytest.approx(0.1)
    assert book.order(order_body("S1USDC", "BUY", 50, "b2", 10.0), 0, 0)[0] == 201
    (position,) = book.active_positions()
    assert position["quantity"] == 50, "a new cycle: the dust is no part of it"
    assert {r["asset"]: r["free"] for r in book.balances()}["S1"] == pytest.approx(50.1)
    status, answer = book.order(order_body("S1USDC", "SELL", 50.2, "s2", 10.0), 0, 0)
    assert status == 422 and "held 50.1" in answer["error"], "the balance limits a SELL"
