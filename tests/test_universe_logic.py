"""The universe's pure logic: statistics, each filter, the correlation walk, rotations,
the blacklist."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from coordinator.trading.blacklist import Blacklist, BlacklistEntry, StopLossRule
from coordinator.trading.market_stats import CandleBook, correlations
from coordinator.trading.universe_filters import (
    Candidate,
    CorrelationFilter,
    FilterContext,
    MarketCapFilter,
    ScoreFilter,
    SpreadFilter,
    TopFilter,
    VolatilityFilter,
    VolumeFilter,
    build_chain,
    run_chain,
)
from coordinator.trading.universe_rotation import (
    Member,
    RotationPolicy,
    UniverseState,
    plan_rotation,
)

HOUR = 3_600_000


def stats_for(
    symbol: str,
    *,
    volume: float = 2e6,
    volatility: float | None = 0.05,
    change: float | None = 0.01,
):
    from coordinator.trading.market_stats import SymbolStats

    return SymbolStats(symbol, 1.0, volume, volatility, change, 100, 0)


def candidate(symbol: str, **kwargs) -> Candidate:
    spread = kwargs.pop("spread", None)
    cap = kwargs.pop("cap", None)
    return Candidate(symbol, stats_for(symbol, **kwargs), spread, cap)


NO_RETURNS = FilterContext(returns=None)


# --- filters -----------------------------------------------------------------------------


def test_volume_filter():
    result = VolumeFilter(1e6).apply(
        [
            candidate("AAAUSDC", volume=2e6),
            candidate("BBBUSDC", volume=5e5),
            Candidate("CCCUSDC", None),
        ],
        NO_RETURNS,
    )
    assert [c.symbol for c in result.kept] == ["AAAUSDC"]
    assert result.dropped == {
        "BBBUSDC": "24 h volume 500,000 < 1,000,000",
        "CCCUSDC": "no market data",
    }


@pytest.mark.parametrize(
    ("policy", "kept"), [("keep", ["AAAUSDC", "CCCUSDC"]), ("drop", ["AAAUSDC"])]
)
def test_spread_filter_and_its_unknown_policy(policy, kept):
    result = SpreadFilter(0.1, policy).apply(
        [candidate("AAAUSDC", spread=0.05), candidate("BBBUSDC", spread=0.3), candidate("CCCUSDC")],
        NO_RETURNS,
    )
    assert [c.symbol for c in result.kept] == kept
    assert result.dropped["BBBUSDC"] == "spread 0.3000 % > 0.1 %"
    if policy == "drop":
        assert "spread unknown" in result.dropped["CCCUSDC"]


@pytest.mark.parametrize(
    ("policy", "kept"), [("keep", ["AAAUSDC", "CCCUSDC"]), ("drop", ["AAAUSDC"])]
)
def test_market_cap_filter_and_its_unknown_policy(policy, kept):
    result = MarketCapFilter(5e7, policy).apply(
        [candidate("AAAUSDC", cap=1e9), candidate("BBBUSDC", cap=1e6), candidate("CCCUSDC")],
        NO_RETURNS,
    )
    assert [c.symbol for c in result.kept] == kept
    assert result.dropped["BBBUSDC"] == "market cap 1,000,000 < 50,000,000"


def test_volatility_filter():
    result = VolatilityFilter(0.02, 0.15).apply(
        [
            candidate("AAAUSDC", volatility=0.05),
            candidate("BBBUSDC", volatility=0.01),
            candidate("CCCUSDC", volatility=0.2),
            candidate("DDDUSDC", volatility=None),
        ],
        NO_RETURNS,
    )
    assert [c.symbol for c in result.kept] == ["AAAUSDC"]
    assert result.dropped["BBBUSDC"] == "volatility 0.0100 outside 0.02-0.15"
    assert result.dropped["DDDUSDC"] == "not enough candles for a volatility"


def test_score_sorts_by_the_documented_formula():
    score = ScoreFilter({"volume": 1, "volatility": 1, "momentum": 0}, (0.02, 0.10))
    result = score.apply(
        [
            candidate("LOWUSDC", volume=1e6, volatility=0.06),  # volume 0, closeness 1
            candidate("HIGHUSDC", volume=1e8, volatility=0.02),  # volume 1, closeness 0
            candidate("MIDUSDC", volume=1e7, volatility=0.04),  # volume 0.5, closeness 0.5
        ],
        NO_RETURNS,
    )
    # Equal weights: each scores 0.5, and ties go by symbol.
    assert [(c.symbol, c.score) for c in result.kept] == [
        ("HIGHUSDC", 0.5),
        ("LOWUSDC", 0.5),
        ("MIDUSDC", 0.5),
    ]
    assert not result.dropped
    weighted = ScoreFilter({"volume": 3, "volatility": 1}, (0.02, 0.10)).apply(
        result.kept, NO_RETURNS
    )
    assert [c.symbol for c in weighted.kept] == ["HIGHUSDC", "MIDUSDC", "LOWUSDC"]
    assert weighted.kept[0].score == pytest.approx(0.75)


def test_top_filter():
    result = TopFilter(2).apply([candidate(f"S{i}USDC") for i in range(4)], NO_RETURNS)
    assert [c.symbol for c in result.kept] == ["S0USDC", "S1USDC"]
    assert result.dropped == {
        "S2USDC": "rank 3 below the top 2",
        "S3USDC": "rank 4 below the top 2",
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VolumeFilter(-1), "min_volume_24h"),
        (lambda: SpreadFilter(0), "max_spread_percent"),
        (lambda: SpreadFilter(0.1, "maybe"), "keep or drop"),
        (lambda: VolatilityFilter(0.2, 0.1), "low < high"),
        (lambda: ScoreFilter({"luck": 1}, (0.1, 0.2)), "unknown score weights"),
        (lambda: ScoreFilter({"volume": 0}, (0.1, 0.2)), "all be 0"),
        (lambda: CorrelationFilter(1.5), "correlation limit"),
        (lambda: TopFilter(0), "size"),
    ],
)
def test_filters_refuse_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_filters_describe_themselves():
    assert VolumeFilter(1e6).describe() == "24 h quote volume >= 1,000,000"
    assert "0.8" in CorrelationFilter(0.8).describe()


# --- the correlation walk ----------------------------------------------------------------


def returns_matrix(rows: dict[str, np.ndarray]):
    from coordinator.trading.market_stats import ReturnsMatrix

    symbols = tuple(rows)
    return ReturnsMatrix(
        symbols, {s: i for i, s in enumerate(symbols)}, np.vstack(list(rows.values()))
    )


def test_correlation_walk_on_series_with_known_correlations():
    rng = np.random.default_rng(7)
    base = rng.normal(0, 0.01, 500)
    noise = rng.normal(0, 0.01, 500)
    rows = {
        "AAAUSDC": base,
        "BBBUSDC": base * 0.9 + noise * 0.1,  # corr ~ 0.99 with A
        "CCCUSDC": noise,  # corr ~ 0 with A
        "DDDUSDC": base * 0.6 + noise * 0.8,  # corr 0.6 with A, 0.8 with C
    }
    matrix = returns_matrix(rows)
    expected = {
        s: float(np.corrcoef(rows["AAAUSDC"], rows[s])[0, 1])
        for s in ("BBBUSDC", "CCCUSDC", "DDDUSDC")
    }
    assert expected["BBBUSDC"] > 0.99 and abs(expected["CCCUSDC"]) < 0.1
    got = correlations(
        rows["AAAUSDC"], np.vstack([rows["BBBUSDC"], rows["CCCUSDC"], rows["DDDUSDC"]]), 20
    )
    assert got == pytest.approx([expected["BBBUSDC"], expected["CCCUSDC"], expected["DDDUSDC"]])

    ordered = [candidate(s) for s in ("AAAUSDC", "BBBUSDC", "CCCUSDC", "DDDUSDC")]
    result = CorrelationFilter(0.7).apply(ordered, FilterContext(returns=matrix))
    assert [c.symbol for c in result.kept] == ["AAAUSDC", "CCCUSDC"]
    assert result.dropped["BBBUSDC"].startswith("correlation 0.99")
    assert "with AAAUSDC" in result.dropped["BBBUSDC"]
    assert "with CCCUSDC" in result.dropped["DDDUSDC"]  # 0.8 with C beats 0.6 with A


def test_correlation_uses_only_the_slots_both_have():
    a = np.array([0.01, -0.02, np.nan, 0.03, -0.01, 0.02, np.nan, -0.03] * 5)
    b = np.array([0.01, -0.02, 0.5, 0.03, -0.01, 0.02, -0.4, np.nan] * 5)
    both = np.isfinite(a) & np.isfinite(b)
    expected = float(np.corrcoef(a[both], b[both])[0, 1])
    assert correlations(a, b[None, :], 10)[0] == pytest.approx(expected)
    assert math.isnan(correlations(a, b[None, :], 1000)[0])


def test_the_walk_stops_once_the_top_is_full():
    rng = np.random.default_rng(1)
    rows = {f"S{i:02d}USDC": rng.normal(0, 0.01, 100) for i in range(10)}
    chain = build_chain(
        ["score", "correlation", "top"],
        {
            "score_weights": {"volume": 1},
            "volatility_range": (0.02, 0.15),
            "correlation_limit": 0.9,
            "universe_size": 3,
        },
    )
    result = run_chain(
        chain,
        [candidate(s, volume=1e6 * (i + 1)) for i, s in enumerate(rows)],
        returns_matrix(rows),
    )
    assert [c.symbol for c in result.selected] == ["S09USDC", "S08USDC", "S07USDC"]
    assert (
        result.verdicts["S00USDC"] == "correlation: rank 10: the walk had its 3 before reaching it"
    )


def test_chain_order_and_verdicts():
    chain = build_chain(
        ["volume", "volatility", "top"],
        {"min_volume_24h": 1e6, "volatility_range": (0.02, 0.15), "universe_size": 1},
    )
    result = run_chain(
        chain,
        [
            candidate("AAAUSDC", volume=5e6),
            candidate("BBBUSDC", volume=5e5),
            candidate("CCCUSDC", volatility=0.5),
            candidate("DDDUSDC"),
        ],
        None,
    )
    assert [c.symbol for c in result.selected] == ["AAAUSDC"]
    assert result.verdicts == {
        "AAAUSDC": "passed every filter",
        "BBBUSDC": "volume: 24 h volume 500,000 < 1,000,000",
        "CCCUSDC": "volatility: volatility 0.5000 outside 0.02-0.15",
        "DDDUSDC": "top: rank 2 below the top 1",
    }
    with pytest.raises(ValueError, match="unknown universe filters"):
        build_chain(["volume", "luck"], {})


# --- statistics --------------------------------------------------------------------------


def test_candle_book_replaces_the_same_candle_and_keeps_the_newest():
    book = CandleBook("1h", keep=3)
    for hour in range(5):
        assert book.add("AAAUSDC", hour * HOUR, 100.0 + hour, 10.0)
    assert book.add("AAAUSDC", 4 * HOUR, 110.0, 20.0)  # the in-progress candle, updated
    assert not book.add("AAAUSDC", 5 * HOUR + 1, 100.0, 1.0)  # not on the timeframe
    assert not book.add("AAAUSDC", 6 * HOUR, float("nan"), 1.0)
    stats = book.compute(window=2).stats["AAAUSDC"]
    assert stats.candles == 3
    assert stats.last_price == 110.0
    assert stats.quote_volume_24h == 10 + 10 + 20


def test_statistics_of_a_known_series():
    book = CandleBook("1h", keep=100)
    closes = [100 * math.exp(0.01 * (i % 2)) for i in range(50)]  # log returns +-0.01
    for i, close in enumerate(closes):
        book.add("AAAUSDC", i * HOUR, close, 1_000.0)
    stats = book.compute(window=20)
    symbol = stats.stats["AAAUSDC"]
    expected_std = float(np.std([0.01 if i % 2 else -0.01 for i in range(1, 21)], ddof=1))
    assert symbol.volatility == pytest.approx(expected_std * math.sqrt(24))
    assert symbol.quote_volume_24h == 24_000.0
    assert symbol.change_24h == pytest.approx(closes[-1] / closes[-25] - 1)
    row = stats.returns.row("AAAUSDC")
    assert row is not None and np.all(np.isfinite(row)) and len(row) == 20


# --- rotations ---------------------------------------------------------------------------

POLICY = RotationPolicy(
    size=3,
    entry_rotations=2,
    entry_margin=0.2,
    exit_misses=2,
    max_changes=2,
    min_residency=0.0,
    core_pairs=frozenset({"BTCUSDC"}),
)


def rotate(state: UniverseState, qualified: dict[str, float], now: float, **kwargs):
    return plan_rotation(
        state,
        qualified,
        blacklist=kwargs.get("blacklist", frozenset()),
        held=kwargs.get("held", frozenset()),
        policy=kwargs.get("policy", POLICY),
        now=now,
    )


def test_the_first_rotation_fills_the_universe_at_once():
    rotation = rotate(UniverseState(), {"AAAUSDC": 0.9, "BBBUSDC": 0.8, "CCCUSDC": 0.7}, 0)
    assert rotation.selected == {"BTCUSDC", "AAAUSDC", "BBBUSDC"}
    assert rotation.reasons["BTCUSDC"] == "added: core pair"
    assert rotation.reasons["CCCUSDC"].startswith("waiting")


def test_entry_needs_rotations_in_a_row_or_a_margin():
    state = UniverseState(members={"BTCUSDC": Member(0), "AAAUSDC": Member(0, score=0.5)})
    first = rotate(state, {"AAAUSDC": 0.5, "NEWUSDC": 0.55}, 10)
    assert "NEWUSDC" not in first.selected
    assert first.reasons["NEWUSDC"] == "waiting: qualified 1 of 2 rotations"
    second = rotate(first.state, {"AAAUSDC": 0.5, "NEWUSDC": 0.55}, 20)
    assert "NEWUSDC" in second.selected
    assert second.reasons["NEWUSDC"] == "added: qualified 2 rotations in a row"
    full = UniverseState(
        members={
            "BTCUSDC": Member(0),
            "AAAUSDC": Member(0, score=0.5),
            "BBBUSDC": Member(0, score=0.4),
        }
    )
    strong = rotate(full, {"AAAUSDC": 0.5, "BBBUSDC": 0.4, "BIGUSDC": 0.9}, 30)
    assert strong.added == ("BIGUSDC",) and strong.removed == ("BBBUSDC",)
    assert "beats BBBUSDC" in strong.reasons["BIGUSDC"]


def test_a_score_oscillating_around_the_threshold_does_not_flap():
    members = {
        "BTCUSDC": Member(0),
        "AAAUSDC": Member(0, score=0.6),
        "BBBUSDC": Member(0, score=0.5),
    }
    state = UniverseState(members=members)
    changes = 0
    for tick in range(20):
        # XYZ qualifies one rotation in two, at a score close to the weakest member's.
        qualified = {"AAAUSDC": 0.6, "BBBUSDC": 0.5}
        if tick % 2 == 0:
            qualified["XYZUSDC"] = 0.55
        else:
            qualified.pop("BBBUSDC")  # and the weakest member misses one in two
        rotation = rotate(state, qualified, tick * 10.0)
        changes += len(rotation.added) + len(rotation.removed)
        state = rotation.state
    assert changes == 0
    assert state.selected == {"BTCUSDC", "AAAUSDC", "BBBUSDC"}


def test_members_leave_after_misses_and_residency_and_at_most_max_changes():
    members = {s: Member(0, score=0.5) for s in ("AAAUSDC", "BBBUSDC", "CCCUSDC")}
    state = UniverseState(members=members)
    policy = RotationPolicy(
        size=3,
        entry_rotations=1,
        entry_margin=0.2,
        exit_misses=2,
        max_changes=2,
        min_residency=100.0,
    )
    once = rotate(state, {}, 50, policy=policy)
    assert once.removed == ()
    twice = rotate(once.state, {}, 60, policy=policy)
    assert twice.removed == (), "not before the minimum residency"
    assert "kept: missed 2 of 2" in twice.reasons["AAAUSDC"]
    later = rotate(twice.state, {}, 200, policy=policy)
    assert len(later.removed) == 2, "two changes per rotation at most"
    assert "changes already" in later.reasons[(set(members) - set(later.removed)).pop()]


def test_blacklist_removes_at_once_and_core_pairs_stay():
    state = UniverseState(members={"BTCUSDC": Member(0), "AAAUSDC": Member(0, score=0.9)})
    rotation = rotate(state, {"AAAUSDC": 0.9}, 10, blacklist=frozenset({"AAAUSDC"}))
    assert rotation.removed == ("AAAUSDC",)
    assert rotation.reasons["AAAUSDC"] == "removed: blacklisted"
    quiet = rotate(rotation.state, {}, 20)
    assert "BTCUSDC" in quiet.selected, "a core pair never leaves for lack of qualifying"


def test_a_held_symbol_that_leaves_is_draining_until_closed():
    state = UniverseState(members={"BTCUSDC": Member(0), "AAAUSDC": Member(0, score=0.9)})
    out = rotate(state, {}, 10, blacklist=frozenset({"AAAUSDC"}), held=frozenset({"AAAUSDC"}))
    assert out.state.draining == {"AAAUSDC"}
    assert "draining" in out.reasons["AAAUSDC"]
    still = rotate(out.state, {}, 20, held=frozenset({"AAAUSDC"}))
    assert still.state.draining == {"AAAUSDC"}
    closed = rotate(still.state, {}, 30, held=frozenset())
    assert closed.state.draining == frozenset()


def test_random_rotations_keep_the_invariants():
    rng = random.Random(3)
    state = UniverseState()
    symbols = [f"S{i}USDC" for i in range(12)]
    for tick in range(200):
        qualified = {s: rng.random() for s in symbols if rng.random() < 0.5}
        blacklist = frozenset(s for s in symbols if rng.random() < 0.05)
        rotation = rotate(state, qualified, tick * 10.0, blacklist=blacklist)
        non_core = rotation.selected - POLICY.core_pairs
        assert len(non_core) <= POLICY.size
        assert not rotation.selected & blacklist
        assert "BTCUSDC" in rotation.selected
        counted = [
            s for s in rotation.added + rotation.removed if s not in blacklist and s != "BTCUSDC"
        ]
        assert len(counted) <= POLICY.max_changes or not (state.selected - POLICY.core_pairs)
        state = rotation.state


# --- blacklist ---------------------------------------------------------------------------


def test_blacklist_expiry():
    entry = BlacklistEntry("AAAUSDC", "delisting", "api", 0.0, 60.0)
    forever = BlacklistEntry("BBBUSDC", "scam", "api", 0.0, None)
    blacklist = Blacklist.empty().add(entry).add(forever)
    assert blacklist.active(59.9) == {"AAAUSDC", "BBBUSDC"}
    later, expired = blacklist.expire(60.0)
    assert expired == [entry]
    assert later.active(1e12) == {"BBBUSDC"}
    removed, gone = later.remove("BBBUSDC")
    assert gone == forever and removed.active(0) == frozenset()


def test_stop_loss_rule():
    rule = StopLossRule(count=3, window=100.0, cooldown=500.0)
    assert rule.check("AAAUSDC", [0.0, 50.0], 60.0) is None
    entry = rule.check("AAAUSDC", [0.0, 50.0, 90.0], 90.0)
    assert entry is not None and entry.source == "auto" and entry.expires_at == 590.0
    assert rule.check("AAAUSDC", [0.0, 50.0, 150.0], 150.0) is None, (
        "the first is out of the window"
    )
    with pytest.raises(ValueError):
        StopLossRule(0, 1, 1)
