"""Real Binance candles through the statistics and the filter chain, checked against
values computed here independently (plain Python, no code of the coordinator)."""

from __future__ import annotations

import csv
import math
import statistics

import numpy as np
import pytest

from coordinator.trading.market_stats import CandleBook
from coordinator.trading.universe_filters import Candidate, build_chain, run_chain
from tests.shared_data import CANDLES, needs_candles

DATA = CANDLES
FIVE_MINUTES = 300_000
DAY = 86_400_000
WINDOW = 288  # one day of 5-minute candles

pytestmark = needs_candles


def load() -> dict[str, list[tuple[int, float, float]]]:
    series = {}
    for path in sorted(DATA.glob("*BTC-5m.csv")):
        with path.open() as handle:
            rows = [
                (int(r["time_ms"]), float(r["close"]), float(r["volume"]))
                for r in csv.DictReader(handle)
            ]
        series[path.name.split("-")[0]] = rows
    return series


@pytest.fixture(scope="module")
def market():
    series = load()
    assert len(series) == 7, sorted(series)
    book = CandleBook("5m", keep=10_000)
    for symbol, rows in series.items():
        for time_ms, close, volume in rows:
            assert book.add(symbol, time_ms, close, close * volume)
    return series, book.compute(window=WINDOW)


def expected_volume(rows, newest: int) -> float:
    return sum(close * volume for time_ms, close, volume in rows if time_ms > newest - DAY)


def slot_returns(rows, newest: int) -> dict[int, float]:
    """Log return ending at each slot of the window, where the previous candle exists."""
    first = newest - WINDOW * FIVE_MINUTES
    closes = {time_ms: close for time_ms, close, _ in rows}
    out = {}
    for time_ms, close, _ in rows:
        before = closes.get(time_ms - FIVE_MINUTES)
        if before is not None and time_ms > first:
            out[time_ms] = math.log(close / before)
    return out


def test_volumes_and_volatilities(market):
    series, computed = market
    newest = max(rows[-1][0] for rows in series.values())
    for symbol, rows in series.items():
        stats = computed.stats[symbol]
        assert stats.quote_volume_24h == pytest.approx(expected_volume(rows, newest), rel=1e-9)
        returns = list(slot_returns(rows, newest).values())
        expected = statistics.stdev(returns) * math.sqrt(DAY / FIVE_MINUTES)
        assert stats.volatility == pytest.approx(expected, rel=1e-9), symbol
        assert stats.last_price == rows[-1][1]


def test_correlations(market):
    series, computed = market
    newest = max(rows[-1][0] for rows in series.values())
    returns = {s: slot_returns(rows, newest) for s, rows in series.items()}
    from coordinator.trading.market_stats import correlations

    checked = 0
    for a in series:
        for b in series:
            if a >= b:
                continue
            common = sorted(set(returns[a]) & set(returns[b]))
            x = [returns[a][t] for t in common]
            y = [returns[b][t] for t in common]
            expected = statistics.correlation(x, y)
            got = correlations(computed.returns.row(a), computed.returns.row(b)[None, :], 20)[0]
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (a, b)
            checked += 1
    assert checked == 21


def test_the_chain_selects_what_the_numbers_say(market):
    series, computed = market
    newest = max(rows[-1][0] for rows in series.values())
    volumes = {s: expected_volume(rows, newest) for s, rows in series.items()}
    min_volume = sorted(volumes.values())[1]  # drops exactly the smallest
    vols = {s: computed.stats[s].volatility for s in series}
    low, high = 0.0, sorted(vols.values())[-1] - 1e-9  # drops exactly the most volatile
    chain = build_chain(
        ["volume", "volatility", "score", "correlation", "top"],
        {
            "min_volume_24h": min_volume,
            "volatility_range": (low, high),
            "score_weights": {"volume": 1.0},
            "correlation_limit": 0.5,
            "universe_size": 3,
        },
    )
    result = run_chain(chain, [Candidate(s, computed.stats[s]) for s in series], computed.returns)
    smallest = min(volumes, key=volumes.get)
    wildest = max(vols, key=vols.get)
    assert result.verdicts[smallest].startswith("volume: 24 h volume")
    if wildest != smallest:
        assert result.verdicts[wildest].startswith("volatility: ")
    # Independently: by volume, then the walk with the correlation limit.
    remaining = sorted(
        (s for s in series if s not in (smallest, wildest)), key=lambda s: -volumes[s]
    )
    returns = {s: slot_returns(series[s], newest) for s in series}
    kept: list[str] = []
    for symbol in remaining:
        if len(kept) == 3:
            break
        too_close = False
        for other in kept:
            common = sorted(set(returns[symbol]) & set(returns[other]))
            corr = statistics.correlation(
                [returns[symbol][t] for t in common], [returns[other][t] for t in common]
            )
            too_close = too_close or corr > 0.5
        if not too_close:
            kept.append(symbol)
    assert [c.symbol for c in result.selected] == kept
    assert np.isfinite(list(result.scores.values())).all()
