"""The HTTP views on hand-made snapshots: what each route shows of an actor's answer."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from coordinator.http.facade_metrics import MetricsInputs
from coordinator.http.views import About, health_view, status_view
from coordinator.http.views_metrics import metric_families
from coordinator.http.views_records import (
    plain,
    since_start_view,
    stats_view,
    trailing_stops_view,
    universe_view,
    unknown_orders_view,
)
from coordinator.messages.health import HealthSnapshot
from coordinator.messages.ledger import LedgerSnapshot
from coordinator.messages.pipeline import IntakeSnapshot, OrderRecord, StoreSnapshot
from coordinator.messages.reconcile import ReconcilerSnapshot
from coordinator.messages.stats import StatsSnapshot
from coordinator.messages.stops import TrailingStopsSnapshot
from coordinator.messages.supervision import ChildSnapshot, SupervisorSnapshot
from coordinator.messages.universe import UniverseSnapshot
from coordinator.trading.blacklist import BlacklistEntry
from coordinator.trading.trading_state import StateReason, TradingState, TradingStatus
from coordinator.trading.universe_rotation import Member

NOW = 1_700_000_000.0
ABOUT = About(
    now=NOW,
    uptime=12.34567,
    version="9.9.9",
    mode="paper",
    paper=True,
    started_at=NOW - 12.34567,
    trading_enabled=True,
    redis_embedded=True,
    database_embedded=False,
)


def child(name: str, state: str = "running", errors: int = 0) -> ChildSnapshot:
    return ChildSnapshot(
        name=name,
        actor=name.title(),
        restart="permanent",
        state=state,
        incarnation=1,
        restarts=0,
        errors=errors,
        last_failure=None,
        mailbox_depth=0,
        uptime=1.0,
        restart_in=None,
    )


def tree(*children: ChildSnapshot, state: str = "running") -> SupervisorSnapshot:
    return SupervisorSnapshot(
        state=state,
        strategy="one_for_one",
        children=children,
        restarts_in_window=0,
        max_restarts=10,
        restart_window=60.0,
        failure=None,
    )


def health(state: TradingState = TradingState.ACTIVE) -> HealthSnapshot:
    reasons = () if state is TradingState.ACTIVE else (StateReason("trader_down", "down"),)
    return HealthSnapshot(
        trading=TradingStatus(state=state, reasons=reasons),
        trading_since=NOW - 5,
        dependencies=(),
        halted=False,
        halt_reason="",
        halt_persisted=True,
    )


def store_snapshot(*unknown: OrderRecord) -> StoreSnapshot:
    return StoreSnapshot(
        postgres_ok=True,
        pending=0,
        journaled=0,
        written=3,
        last_error=None,
        undecided=0,
        unknown_orders=unknown,
    )


def test_a_stopped_actor_makes_the_service_unhealthy_with_503() -> None:
    status, body = health_view(ABOUT, tree(child("ledger"), child("stats", "failed")), health())

    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["problems"] == ["actor stats is failed"]
    assert body["actors"]["stats"] == {"state": "failed", "incarnation": 1, "restarts": 0}
    assert body["uptime"] == 12.346


def test_health_without_an_answer_from_service_health_is_degraded_and_says_why() -> None:
    status, body = health_view(ABOUT, tree(child("ledger")), None, "actor service_health is x")

    assert status == 200
    assert body["status"] == "degraded"
    assert body["trading"] is None and body["kill_switch"] is None
    assert body["problems"] == ["actor service_health is x"]


def test_status_shows_a_degraded_trading_state_and_its_reasons() -> None:
    body = status_view(ABOUT, health(TradingState.DEGRADED))

    assert body["trading_state"] == "DEGRADED"
    assert body["trading"]["buys_allowed"] is False
    assert body["trading"]["reasons"] == [{"code": "trader_down", "detail": "down"}]
    assert body["kill_switch"]["exits"] == "allow"


def test_since_start_counts_orders_sent_and_the_validation_rate() -> None:
    since = since_start_view(
        StatsSnapshot(
            signals_processed=3,
            signals_validated=2,
            orders_accepted=1,
            orders_unknown=1,
            orders_rejected=5,
            rejections_by_reason=(("stale_signal", 4), ("overloaded", 1)),
        )
    )

    assert since["orders_sent"] == 2
    assert since["validation_success_rate"] == 0.666667
    assert list(since["rejections_by_reason"]) == ["stale_signal", "overloaded"]
    assert since_start_view(StatsSnapshot())["validation_success_rate"] is None


def test_stats_show_null_for_the_actors_that_did_not_answer() -> None:
    intake = IntakeSnapshot(
        received=7, admitted=6, rejected=1, duplicates=0, in_flight=1, resent=0, links=()
    )
    store = store_snapshot()
    body = stats_view(
        ABOUT,
        intake=intake,
        stats=StatsSnapshot(internal_errors=1, lifetime={"signals": Decimal("3")}),
        store=store,
        actor_errors=2,
        ledger=None,
        universe=None,
        stops=None,
        market=None,
    )

    assert body["errors"] == 3
    assert body["active_positions"] is None and body["reservations_open"] is None
    assert body["cash_held_back"] is None and body["base_held_back"] is None
    assert body["universe_size"] is None and body["trailing_stops_active"] is None
    assert body["market_data"] is None
    assert body["lifetime"] == {"signals": "3"}
    assert body["signals_received"] == 7


def test_stats_show_the_cash_and_the_base_the_ledger_holds_back() -> None:
    """What BUYs may not spend while the last view may count our orders twice, and
    what SELLs may not sell while it may not show our SELLs yet."""
    intake = IntakeSnapshot(
        received=0, admitted=0, rejected=0, duplicates=0, in_flight=0, resent=0, links=()
    )
    ledger = LedgerSnapshot(
        positions=("BTCUSDC",),
        reservations=2,
        reserved_quote=100.0,
        view_age=1.0,
        error=None,
        cash_held_back=26.012345678901,
        base_held_back={"ETH": 0.5, "BTC": 1.234567891234},
    )
    body = stats_view(
        ABOUT,
        intake=intake,
        stats=StatsSnapshot(),
        store=store_snapshot(),
        actor_errors=0,
        ledger=ledger,
        universe=None,
        stops=None,
        market=None,
    )
    assert body["cash_held_back"] == 26.01234568
    assert body["base_held_back"] == {"BTC": 1.23456789, "ETH": 0.5}
    families = {
        f.name: f for f in metric_families(MetricsInputs(about=ABOUT, answered=(), ledger=ledger))
    }
    assert {s.labels["asset"]: s.value for s in families["coordinator_base_held_back"].samples} == {
        "BTC": 1.234567891234,
        "ETH": 0.5,
    }
    assert families["coordinator_cash_held_back"].samples[0].value == 26.012345678901
    assert body["reservations_open"] == 2 and body["active_positions"] == 1


def test_universe_shows_members_by_symbol_and_excludes_them_from_the_excluded() -> None:
    snapshot = UniverseSnapshot(
        selected=frozenset({"BTCUSDC", "ETHUSDC"}),
        blacklist=(("XRPUSDC", "too many stops"),),
        members=(("BTCUSDC", Member(since=NOW, score=1.5)), ("ETHUSDC", Member(since=NOW))),
        core_pairs=frozenset({"BTCUSDC"}),
        blacklisted=(BlacklistEntry("XRPUSDC", "too many stops", "auto", NOW, None),),
        next_at=NOW + 60,
        verdicts={"ETHUSDC": "volume too low", "SOLUSDC": "volume too low"},
        added=("ETHUSDC",),
    )

    body = universe_view(snapshot)

    assert body["selected_symbols"] == ["BTCUSDC", "ETHUSDC"]
    assert body["excluded"] == {"SOLUSDC": "volume too low"}
    assert body["members"]["BTCUSDC"]["score"] == 1.5
    assert body["last_update"] is None
    assert body["blacklist"][0]["expires_at"] is None
    assert body["last_diff"] == {"added": ["ETHUSDC"], "removed": [], "reasons": {}}
    assert json.loads(json.dumps(body)) == body


def test_trailing_stops_count_the_holdings_awaiting_an_order() -> None:
    body = trailing_stops_view(
        TrailingStopsSnapshot(
            active=2,
            positions=({"symbol": "A", "waiting_on_order": "x"}, {"waiting_on_order": None}),
            default_rules="atr+percent",
            rules_by_symbol=(("BTCUSDC", "percent"),),
            positions_fetched_at=NOW,
        )
    )

    assert body["count"] == 2
    assert body["awaiting_orders"] == 1
    assert body["rules"]["by_symbol"] == {"BTCUSDC": "percent"}
    assert body["positions_fetched_at"] is not None


def test_unknown_orders_leave_out_those_the_reconciler_has_settled() -> None:
    def order(coid: str) -> OrderRecord:
        return OrderRecord(
            client_order_id=coid,
            signal_id="s",
            symbol="BTCUSDC",
            side="BUY",
            quantity=1.0,
            reference_price=2.0,
            state="unknown",
            at=NOW,
        )

    store = store_snapshot(order("a"), order("b"))
    reconciler = ReconcilerSnapshot(
        accepted=1,
        rejected=0,
        resolved_by_operator=0,
        still_unknown=(),
        resolved=frozenset({"a"}),
        last_run=None,
        last_error=None,
        runs=1,
    )

    body = unknown_orders_view(store, reconciler)

    assert [o["client_order_id"] for o in body["orders"]] == ["b"]
    assert body["reconciler"]["reconciled"]["accepted"] == 1
    assert unknown_orders_view(store, None)["count"] == 2


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(),
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(st.text(), st.integers(), st.booleans(), st.none()), inner, max_size=3
        ),
    ),
    max_leaves=12,
)


@given(_values)
def test_plain_gives_what_json_with_text_for_the_rest_would_give(value: Any) -> None:
    assert json.dumps(plain(value)) == json.dumps(json.loads(json.dumps(value, default=str)))


def test_plain_turns_a_stored_timestamp_into_its_text() -> None:
    at = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert plain({"at": at, "qty": Decimal("1.50")}) == {"at": str(at), "qty": "1.50"}


def test_status_says_the_role_the_leader_elector_gives() -> None:
    from coordinator.cluster.lease import Belief, Role
    from coordinator.messages.leadership import LeadershipSnapshot

    def leadership(role: Role) -> LeadershipSnapshot:
        return LeadershipSnapshot(
            lease="leader",
            holder="host:1:abc",
            role=role,
            belief=Belief.LEADER if role is Role.LEADER else Belief.FOLLOWER,
            generation=3,
            expires_in=1.2 if role is Role.LEADER else None,
            elected=1,
            last_error=None,
            awaiting=False,
            ticks=10,
        )

    healthy = health(TradingState.ACTIVE)
    assert status_view(ABOUT, healthy, leadership(Role.LEADER))["role"] == "leader"
    assert status_view(ABOUT, healthy, leadership(Role.FOLLOWER))["role"] == "follower"
    # No answer from the elector: nothing confirmed that this instance leads.
    assert status_view(ABOUT, healthy, None)["role"] == "follower"
