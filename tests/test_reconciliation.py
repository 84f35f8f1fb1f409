"""The matching of unknown orders against the Trader's fills: every rule by example, a
property over any orders and fills, and a model with the truth known over time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.trading.reconciliation import (
    FillSource,
    MatchPolicy,
    OurOrder,
    Resolution,
    Venue,
    VerdictReason,
    matches,
    merge_fills,
    reconcile,
)

POLICY = MatchPolicy(window_before=5.0, window_after=15.0, step_tolerance=0.01)
T0 = 1_761_573_795.0


def ours(
    cid: str = "c1", *, qty: float = 1.1068501275829288, at: float = T0, **kw: Any
) -> OurOrder:
    return OurOrder(
        client_order_id=cid,
        symbol=kw.get("symbol", "SOLUSDC"),
        side=kw.get("side", "BUY"),
        quantity=qty,
        sent_at=at,
        trader_order_id=kw.get("trader_order_id"),
    )


def trader_fill(fid: str = "order_53f354c377021b43", *, qty: float = 1.1068501275829288,
                at: float = T0 + 0.5, **kw: Any) -> Venue:  # fmt: skip
    return Venue(
        fill_id=fid,
        source=FillSource.TRADER,
        symbol=kw.get("symbol", "SOLUSDC"),
        side=kw.get("side", "BUY"),
        quantity=qty,
        at=at,
        binance_order_id=kw.get("binance"),
    )


def execution(fid: str = "2281734905", *, qty: float = 1.106, at: float = T0 + 0.3) -> Venue:
    return Venue(
        fill_id=fid,
        source=FillSource.EXECUTIONS,
        symbol="SOLUSDC",
        side="BUY",
        quantity=qty,
        at=at,
        binance_order_id=fid,
    )


def run(unknown, fills, *, now=T0 + 1, since=T0 - 3600, until=None, settled=()):
    return reconcile(
        unknown,
        fills,
        now=now,
        covered_since=since,
        covered_until=now if until is None else until,
        policy=POLICY,
        settled=settled,
    )


# --- by example ----------------------------------------------------------------------


def test_the_traders_order_matches_by_symbol_side_quantity_and_time():
    (verdict,) = run([ours()], [trader_fill()])
    assert verdict.resolution is Resolution.ACCEPTED
    assert verdict.reason is VerdictReason.MATCHED
    assert verdict.trader_order_id == "order_53f354c377021b43"


@pytest.mark.parametrize(
    "fill",
    [
        trader_fill(symbol="BTCUSDC"),
        trader_fill(side="SELL"),
        trader_fill(qty=1.106),  # the Trader's list shows the requested quantity
        trader_fill(at=T0 - 5.5),
        trader_fill(at=T0 + 15.5),
    ],
)
def test_a_fill_differing_in_anything_is_not_ours(fill):
    assert not matches(ours(), fill, POLICY)


def test_an_execution_matches_ours_truncated_to_the_step_size_but_never_more():
    assert matches(ours(), execution(qty=1.106), POLICY)
    assert not matches(ours(), execution(qty=1.2), POLICY)
    assert not matches(ours(), execution(qty=1.05), POLICY)  # more than the step tolerance
    (verdict,) = run([ours()], [execution()])
    assert verdict.resolution is Resolution.ACCEPTED and verdict.trader_order_id == "2281734905"


def test_an_execution_the_traders_list_carries_is_counted_once():
    listed = trader_fill(binance="2281734905")
    merged = merge_fills([listed], [execution(), execution()])
    assert merged == [listed]
    (verdict,) = run([ours()], merged)
    assert verdict.trader_order_id == listed.fill_id


def test_two_fills_matching_one_order_is_ambiguous():
    (verdict,) = run([ours()], [trader_fill("order_a"), trader_fill("order_b", at=T0 + 2)])
    assert verdict.resolution is Resolution.UNKNOWN and verdict.reason is VerdictReason.AMBIGUOUS
    assert verdict.alert and set(verdict.candidates) == {"order_a", "order_b"}


def test_one_fill_never_makes_two_of_ours_accepted():
    verdicts = run([ours("c1"), ours("c2", at=T0 + 1)], [trader_fill()])
    assert [v.resolution for v in verdicts] == [Resolution.UNKNOWN, Resolution.UNKNOWN]
    assert all(v.reason is VerdictReason.AMBIGUOUS for v in verdicts)
    assert "c2" in verdicts[0].detail


def test_a_fill_a_settled_order_could_be_is_not_given_to_an_unknown_one():
    settled = ours("done", at=T0 + 1, trader_order_id="order_phantom")
    (verdict,) = run([ours()], [trader_fill()], settled=[settled])
    assert verdict.reason is VerdictReason.AMBIGUOUS
    # A fill carrying a settled order's id is that order's, and it competes no more.
    mine = trader_fill("order_mine")
    settled = ours("done", at=T0 + 1, trader_order_id="order_theirs")
    theirs = trader_fill("order_theirs", at=T0 + 1.2)
    (verdict,) = run([ours()], [theirs, mine], settled=[settled])
    assert verdict.resolution is Resolution.ACCEPTED and verdict.trader_order_id == "order_mine"


def test_no_fill_is_rejected_only_once_the_window_passed_and_is_covered():
    (open_,) = run([ours()], [], now=T0 + 10)
    assert open_.resolution is Resolution.UNKNOWN and open_.reason is VerdictReason.WINDOW_OPEN
    (early_read,) = run([ours()], [], now=T0 + 20, until=T0 + 12)
    assert early_read.reason is VerdictReason.WINDOW_OPEN
    (restarted,) = run([ours()], [], now=T0 + 20, since=T0 + 2)
    assert restarted.resolution is Resolution.UNKNOWN
    assert restarted.reason is VerdictReason.NOT_COVERED
    (nothing_read,) = run([ours()], [], now=T0 + 20, since=None)
    assert nothing_read.reason is VerdictReason.NOT_COVERED
    (gone,) = run([ours()], [], now=T0 + 20)
    assert gone.resolution is Resolution.REJECTED and gone.reason is VerdictReason.NOT_FOUND
    assert "not found at the Trader" in gone.detail


def test_a_found_order_is_accepted_before_its_window_closes():
    (verdict,) = run([ours()], [trader_fill()], now=T0 + 1, since=None)
    assert verdict.resolution is Resolution.ACCEPTED


@pytest.mark.parametrize(
    "bad", [{"window_after": -1}, {"step_tolerance": 1.0}, {"window_before": float("nan")}]
)
def test_a_bad_policy_is_refused_naming_the_field(bad):  # fmt: skip
    with pytest.raises(ValueError, match=next(iter(bad))):
        MatchPolicy(**bad)


# --- any orders, any fills -----------------------------------------------------------

symbols = st.sampled_from(["SOLUSDC", "BTCUSDC"])
sides = st.sampled_from(["BUY", "SELL"])
quantities = st.sampled_from([1.0, 1.005, 1.1, 2.0])
times = st.floats(min_value=0, max_value=60, allow_nan=False)
orders = st.lists(
    st.builds(OurOrder, st.uuids().map(str), symbols, sides, quantities, times), max_size=6
)
fills = st.lists(
    st.builds(
        Venue, st.uuids().map(str), st.sampled_from(FillSource), symbols, sides, quantities, times
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(orders, fills, st.floats(min_value=0, max_value=100), st.none() | times)
def test_never_a_double_match_never_accepted_without_a_fill_never_rejected_with_one(
    unknown, read, now, since
):
    verdicts = run(unknown, read, now=now, since=since)
    assert [v.client_order_id for v in verdicts] == [o.client_order_id for o in unknown]
    by_id = {o.client_order_id: o for o in unknown}
    fills_by_id = {f.fill_id: f for f in read}
    accepted = [v for v in verdicts if v.resolution is Resolution.ACCEPTED]
    assert len({v.trader_order_id for v in accepted}) == len(accepted)
    for verdict in verdicts:
        order = by_id[verdict.client_order_id]
        matching = [f for f in read if matches(order, f, POLICY)]
        if verdict.resolution is Resolution.ACCEPTED:
            assert matches(order, fills_by_id[verdict.trader_order_id], POLICY)
            assert matching == [fills_by_id[verdict.trader_order_id]]
        if verdict.resolution is Resolution.REJECTED:
            assert not matching
            assert now > order.sent_at + POLICY.window_after
            assert since is not None and since <= order.sent_at - POLICY.window_before


# --- over time, with the truth known -------------------------------------------------


class Reconciling(RuleBasedStateMachine):
    """Orders are sent, some executed (their fill shows up to 10 s later), some not;
    identical orders are common. The reconciler runs at any time and its verdicts are
    applied as the actor applies them (accepted ones become settled). Whatever happens,
    no fill is ever given to two orders, an accepted order has a fill that matches it,
    and no order that executed is ever rejected."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.truth: dict[str, str | None] = {}
        self.orders: dict[str, OurOrder] = {}
        self.fills: list[Venue] = []
        self.unknown: set[str] = set()
        self.settled: dict[str, OurOrder] = {}
        self.rejected: set[str] = set()
        self.given: dict[str, str] = {}
        self.counter = 0

    @rule(symbol=symbols, side=sides, quantity=quantities, executed=st.booleans(),
          delay=st.floats(min_value=0, max_value=10), truncate=st.booleans())  # fmt: skip
    def send(self, symbol, side, quantity, executed, delay, truncate):
        self.counter += 1
        cid = f"c{self.counter}"
        order = OurOrder(cid, symbol, side, quantity, self.now)
        self.orders[cid] = order
        self.unknown.add(cid)
        self.truth[cid] = None
        if executed:
            source = FillSource.EXECUTIONS if truncate else FillSource.TRADER
            filled = quantity * 0.995 if truncate else quantity
            fid = f"f{self.counter}"
            self.fills.append(Venue(fid, source, symbol, side, filled, self.now + delay))
            self.truth[cid] = fid

    @rule(cid=st.integers(min_value=1, max_value=30))
    def answered(self, cid):
        """An order's answer came after all (as a settled order with its id)."""
        key = f"c{cid}"
        if key in self.unknown and self.truth[key] is not None:
            self.unknown.discard(key)
            self.settled[key] = OurOrder(
                key, *[getattr(self.orders[key], n) for n in ("symbol", "side", "quantity")],
                self.orders[key].sent_at, self.truth[key],
            )  # fmt: skip

    @rule(seconds=st.floats(min_value=0.1, max_value=20))
    def wait(self, seconds):
        self.now += seconds

    @rule()
    def run_reconciler(self):
        visible = [f for f in self.fills if f.at <= self.now]
        verdicts = reconcile(
            [self.orders[c] for c in sorted(self.unknown)],
            visible,
            now=self.now,
            covered_since=-100.0,
            covered_until=self.now,
            policy=POLICY,
            settled=list(self.settled.values()),
        )
        for verdict in verdicts:
            cid = verdict.client_order_id
            if verdict.resolution is Resolution.ACCEPTED:
                assert verdict.trader_order_id not in self.given.values()
                self.given[cid] = verdict.trader_order_id
                self.unknown.discard(cid)
                order = self.orders[cid]
                self.settled[cid] = OurOrder(
                    cid, order.symbol, order.side, order.quantity, order.sent_at,
                    verdict.trader_order_id,
                )  # fmt: skip
            elif verdict.resolution is Resolution.REJECTED:
                self.unknown.discard(cid)
                self.rejected.add(cid)

    @invariant()
    def nothing_executed_is_rejected(self):
        assert all(self.truth[c] is None for c in self.rejected)

    @invariant()
    def each_fill_given_once_and_only_to_a_match(self):
        assert len(set(self.given.values())) == len(self.given)
        by_id = {f.fill_id: f for f in self.fills}
        truth_ids = {f for f in self.truth.values() if f}
        for cid, fid in self.given.items():
            assert matches(self.orders[cid], by_id[fid], POLICY)
            # A fill given to an order is never one a settled order has as its own.
            assert all(s.trader_order_id != fid for c, s in self.settled.items() if c != cid)
        assert set(self.given.values()) <= truth_ids


TestReconciling = Reconciling.TestCase
TestReconciling.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
