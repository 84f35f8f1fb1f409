"""The soak's invariant checks on known facts: each violation found, each allowed case not."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.soak_checks import Facts, check, table
from bench.soak_load import PublishedSignal


def order(client_id: str, state: str, side: str = "BUY", quantity: float = 1.0) -> dict[str, Any]:
    return {
        "client_order_id": client_id,
        "signal_id": f"sig-{client_id}",
        "symbol": "SOLUSDC",
        "side": side,
        "quantity": quantity,
        "state": state,
        "trader_order_id": f"t-{client_id}",
        "error": None,
    }


def arrival(
    client_id: str, status: int, *, side: str = "BUY", error: str | None = None, at: float = 1.0
) -> dict[str, Any]:
    return {
        "mono": at,
        "symbol": "SOLUSDC",
        "side": side,
        "client_order_id": client_id,
        "quantity": 1.0,
        "status": status,
        "error": error,
        "answered": at + 0.01,
    }


def stop_row(symbol: str, *, last_price: float, stop: float) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "position_key": f"{symbol}@k",
        "last_price": last_price,
        "stop": stop,
        "state": "watching",
        "exit_attempts": 0,
        "detail": None,
    }


def facts(**changes: Any) -> Facts:
    base = Facts(
        published=[],
        decided_events={},
        unknown_seen={},
        fault_windows=[],
        unplanned_exits=[],
        start=0.0,
        late_after=2.0,
        stats={"ledger": {"reservations": 0, "reservations_expired": 3}},
        diagnostic={"config": {"RESERVATION_LIFETIME": {"value": 60}}},
        positions=[],
        stops={"positions": []},
        unknown_listed=set(),
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_a_clean_run_has_no_violation():
    clean = facts(
        published=[PublishedSignal("db:1", "SOLUSDC", "BUY", True, 1.0, on_stream=True)],
        decisions={"db:1": ("accepted", None, "", "stream")},
        stored_signals={"db:1": "stream"},
        orders={"c1": order("c1", "accepted"), "c2": order("c2", "accepted")},
        positions=[{"symbol": "SOLUSDC", "quantity": 1.0}],
        stops={
            "positions": [
                stop_row("SOLUSDC", last_price=100.0, stop=96.0),
                {**stop_row("SOLUSDC", last_price=90.0, stop=96.0), "state": "dust"},
            ]
        },
        # c2: a re-send after a 5xx answer, which the exchange never filled.
        arrivals=[arrival("c1", 201), arrival("c2", 500, at=2.0), arrival("c2", 201, at=3.0)],
        paper_stats={"fills_by_client_order_id": {"c1": 1, "c2": 1}, "orders_filled": 2},
        trader_orders=[{"id": "t-c1"}, {"id": "t-c2"}],
    )
    verdict = check(clean)
    assert not any(verdict.violations.values())
    assert verdict.resent_after_5xx == 1
    assert verdict.reservations_checked
    assert verdict.reservations == [
        ("stats.ledger.reservations", 0.0),
        ("stats.ledger.reservations_expired", 3.0),
    ]
    assert "violations: decided_once" in table(clean, verdict, Counter(), "h")


def test_each_violation_is_found_with_its_evidence():
    bad = facts(
        published=[
            PublishedSignal("db:1", "SOLUSDC", "BUY", True, 10.0, on_stream=True),
            PublishedSignal("consensus:c2", "SOLUSDC", "BUY", True, 10.0, receivers=1),
            PublishedSignal("consensus:c3", "SOLUSDC", "BUY", True, 100.0, receivers=1),
            PublishedSignal("db:5", "SOLUSDC", "BUY", True, 10.0, receivers=1),
            PublishedSignal("db:4", "SOLUSDC", "SELL", True, 10.0, on_stream=True),
        ],
        decided_events={"db:4": [{"outcome": "accepted"}, {"outcome": "rejected"}]},
        decisions={
            "db:4": ("accepted", None, "", "stream"),
            "exit:k:1": ("accepted", None, "", "x"),
        },
        stored_signals={"db:4": "stream", "exit:k:2": "trailing_stop"},
        fault_windows=[(20.0, 30.0, "coordinator_kill")],
        orders={
            "twice": order("twice", "accepted"),
            "short": order("short", "rejected", side="SELL"),
            "lost": order("lost", "unknown"),
            "hollow": order("hollow", "accepted"),
            "silent": order("silent", "rejected"),
            "stuck": order("stuck", "sent"),
            "ghost": order("ghost", "accepted"),
            "hidden": order("hidden", "accepted"),
        },
        trader_orders=[{"id": "t-twice"}, {"id": "t-hollow"}, {"id": "t-hidden"}],
        arrivals=[
            arrival("twice", 201),
            arrival("twice", 201, at=5.0),
            arrival("short", 400, side="SELL", error="insufficient SOL: selling 2, 1 held"),
            arrival("orphan", 201),
            arrival("hidden", 500, error="paper exchange: failed after the fill (injected)"),
            arrival("hidden", 201, at=3.0),
            arrival("silent", 201),
        ],
        paper_stats={
            "fills_by_client_order_id": {
                "twice": 1,
                "orphan": 1,
                "silent": 1,
                "ghost": 1,
                "hidden": 1,
            }
        },
        stats={"ledger": {"reservations": 2}},
        sell_sizing={"sig-short": "SELL min(position 2, free 2) floored to 8 decimals: 2"},
        unplanned_exits=["t+5s exit code 3"],
        positions=[{"symbol": "SOLUSDC", "quantity": 1.0}, {"symbol": "ETHUSDC", "quantity": 2.0}],
        stops={"positions": [stop_row("SOLUSDC", last_price=95.0, stop=96.0)]},
    )
    found = check(bad).violations
    decided = " | ".join(found["decided_once"])
    assert "db:1" in decided and "consensus:c3" in decided and "db:4" in decided
    # Pub/sub, lost while the process was being killed; but not when its row was written
    # (the catch-up finds it).
    assert "consensus:c2" not in decided
    assert "db:5 (SOLUSDC BUY" not in decided and "db:5 (BUY SOLUSDC, pub/sub, its" in decided
    assert "exit:k:2" in decided  # stored, never decided
    assert [v.split(" ")[0] for v in found["one_request_per_client_id"]] == ["twice", "hidden"]
    assert found["intent_before_order"][0].startswith("orphan")
    assert "insufficient SOL" in found["sell_within_holding"][0]
    assert "sized on: SELL min(position 2, free 2)" in found["sell_within_holding"][0]
    assert not found["buy_within_funds"]
    assert found["no_reservation_left"] == ["stats.ledger.reservations = 2 once quiet"]
    assert found["unknown_reconciled_or_listed"][0].startswith("lost")
    mismatches = " | ".join(found["store_matches_exchange"])
    assert "hollow" in mismatches and "silent" in mismatches and "stuck" in mismatches
    assert (
        "ghost (sig-ghost, BUY 1 SOLUSDC, stored accepted) accepted as t-ghost, which" in mismatches
    )
    assert len(found["store_matches_exchange"]) == 4
    assert found["coordinator_alive"] == ["t+5s exit code 3"]
    watched = found["held_positions_watched"]
    assert len(watched) == 2
    assert "SOLUSDC 1 held at 95, at or under its stop 96" in watched[0]
    assert watched[1] == "ETHUSDC 2 held, no stop watches it"
