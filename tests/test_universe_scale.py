"""The CandleBook computes every symbol's statistics at once (numpy over a matrix of rows)
so that a rotation over 10,000 symbols stays under a second. It must say exactly what the
former one-symbol-at-a-time CandleBook (tests/universe_reference.py) said: the same
statistics, the same returns matrix, the same universe out of the filter chain."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.trading.market_stats import CandleBook, MarketStats
from coordinator.trading.universe_filters import Candidate, build_chain, run_chain
from tests.universe_reference import ReferenceCandleBook

HOUR = 3_600_000

CHAIN_SETTINGS = {
    "min_volume_24h": 2_000_000,
    "max_spread_percent": 0.1,
    "unknown_spread": "keep",
    "min_market_cap": 50_000_000,
    "unknown_market_cap": "keep",
    "volatility_range": (0.02, 0.15),
    "score_weights": {"volume": 0.5, "volatility": 0.3, "momentum": 0.2},
    "correlation_limit": 0.8,
    "universe_size": 15,
}


def assert_same(got: MarketStats, expected: MarketStats) -> None:
    assert list(got.stats) == list(expected.stats)
    for symbol, want in expected.stats.items():
        have = got.stats[symbol]
        assert (have.symbol, have.last_price, have.candles, have.last_time_ms) == (
            want.symbol,
            want.last_price,
            want.candles,
            want.last_time_ms,
        ), symbol
        # Sums taken in another order may differ in the last bits, no more.
        assert have.quote_volume_24h == pytest.approx(want.quote_volume_24h, rel=1e-12), symbol
        for name in ("volatility", "change_24h"):
            value, reference = getattr(have, name), getattr(want, name)
            assert (value is None) == (reference is None), (symbol, name, value, reference)
            if reference is not None:
                assert value == pytest.approx(reference, rel=1e-9, abs=1e-12), (symbol, name)
    assert got.returns.symbols == expected.returns.symbols
    assert got.returns.index == expected.returns.index
    # The same log differences put in the same slots: equal to the bit.
    assert np.array_equal(got.returns.returns, expected.returns.returns, equal_nan=True)
    assert (got.timeframe_ms, got.window) == (expected.timeframe_ms, expected.window)


def fill_both(keep: int, adds: list[tuple[str, int, float, float]]) -> tuple[CandleBook, ...]:
    book, reference = CandleBook("1h", keep=keep), ReferenceCandleBook("1h", keep=keep)
    for symbol, time_ms, close, quote in adds:
        assert book.add(symbol, time_ms, close, quote) == reference.add(
            symbol, time_ms, close, quote
        ), (symbol, time_ms, close, quote)
    assert book.symbols() == reference.symbols() and len(book) == len(reference)
    return book, reference


def market_feed(symbols: int, seed: int) -> list[tuple[str, int, float, float]]:
    """Candles as a market feed delivers them: mostly in order, some late (out of order),
    some in progress then closed (the same open time twice), some missing (gaps), a few
    unusable; symbols of very different history lengths; sectors sharing a factor, so the
    correlation walk drops some."""
    rng = np.random.default_rng(seed)
    hours = 260
    sectors = rng.normal(0, 0.012, (8, hours))
    adds: list[tuple[str, int, float, float]] = []
    for index in range(symbols):
        symbol = f"S{index:03d}USDC"
        start = int(rng.integers(0, hours - 1)) if index % 5 == 0 else int(rng.integers(0, 40))
        end = hours - int(rng.integers(0, 3))  # a few lag behind the newest candle
        weight = rng.uniform(0.1, 0.95)
        steps = weight * sectors[index % 8] + (1 - weight) * rng.normal(0, 0.015, hours)
        closes = 5.0 * np.exp(np.cumsum(steps))
        quotes = rng.lognormal(12, 1.6, hours)
        late: list[tuple[str, int, float, float]] = []
        for hour in range(start, end):
            candle = (symbol, hour * HOUR, float(closes[hour]), float(quotes[hour]))
            draw = rng.random()
            if draw < 0.04:
                continue  # a gap
            if draw < 0.07:
                late.append(candle)
                continue
            if draw < 0.10:  # in progress first, then closed
                adds.append((symbol, hour * HOUR, float(closes[hour]) * 0.99, 1.0))
            adds.append(candle)
            if late and rng.random() < 0.3:
                adds.append(late.pop(0))
        adds.extend(late)
        if index % 17 == 0:
            adds.append((symbol, end * HOUR + 1, 1.0, 1.0))  # not on the timeframe
            adds.append((symbol, end * HOUR, float("nan"), 1.0))
            adds.append((symbol, end * HOUR, 1.0, -1.0))
    return adds


@pytest.mark.parametrize("keep", [150, 400])
def test_the_same_statistics_and_universe_as_the_one_symbol_at_a_time_book(keep):
    # More rows than one block of compute (1,024), so blocks meet somewhere inside.
    adds = market_feed(1_300, seed=7)
    book, reference = fill_both(keep, adds)
    for window in (2, 24, 96, 300):
        assert_same(book.compute(window), reference.compute(window))
    stats, expected = book.compute(96), reference.compute(96)
    chain = build_chain(
        ["volume", "spread", "market_cap", "volatility", "score", "correlation", "top"],
        CHAIN_SETTINGS,
    )

    def universe(computed: MarketStats):
        candidates = [
            Candidate(
                symbol,
                computed.stats.get(symbol),
                spread_percent=0.02 + (i % 13) / 100,
                market_cap=None if i % 11 == 0 else 1e6 * (i % 97),
            )
            for i, symbol in enumerate(book.symbols())
        ]
        return run_chain(chain, candidates, computed.returns)

    got, want = universe(stats), universe(expected)
    assert [c.symbol for c in got.selected] == [c.symbol for c in want.selected]
    assert got.verdicts == want.verdicts
    assert got.scores == want.scores
    dropped_by = {verdict.split(":")[0] for verdict in want.verdicts.values()}
    # The input exercises every filter that drops (the top N's cut is the correlation
    # walk's, which stops once it has them), and enough symbols pass.
    assert {"volume", "spread", "market_cap", "volatility", "correlation"} <= dropped_by
    assert len(want.selected) == CHAIN_SETTINGS["universe_size"]


candle = st.tuples(
    st.sampled_from(["AAAUSDC", "BBBUSDC", "CCCUSDC"]),
    st.integers(0, 60).map(lambda hour: hour * HOUR) | st.just(HOUR + 7),
    st.floats(0.01, 1e6) | st.sampled_from([0.0, -1.0, math.nan, math.inf]),
    st.floats(0, 1e9) | st.just(-1.0),
)


@settings(max_examples=300, deadline=None)
@given(
    adds=st.lists(candle, max_size=120),
    keep=st.integers(2, 40),
    window=st.integers(2, 70),
)
def test_any_sequence_of_candles_gives_what_the_former_book_gave(adds, keep, window):
    book, reference = fill_both(keep, adds)
    assert_same(book.compute(window), reference.compute(window))
