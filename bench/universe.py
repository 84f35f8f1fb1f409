"""A universe rotation over N symbols (2,000 by default) with 30 days of hourly candles.

Builds N correlated random walks (50 sectors sharing a factor, so the correlation
walk has work to do), loads them into the UniverseManager's CandleBook, then times what
one rotation does: the statistics of every symbol, the filter chain (volume, spread,
market cap, volatility, score, correlation walk, top N) and the rotation plan.

    python bench/universe.py [--symbols 2000] [--candles 720] [--size 20] [--repeat 5]

Prints the median and the slowest rotation, and the median of each part: the statistics
(CandleBook.compute), the filter chain, the rotation plan.

Target: <= 1 s per rotation of 10,000 symbols x 720 candles on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.trading.market_stats import CandleBook
from coordinator.trading.universe_filters import Candidate, build_chain, run_chain
from coordinator.trading.universe_rotation import (
    RotationPolicy,
    UniverseState,
    plan_rotation,
)

HOUR = 3_600_000
TARGET = 1.0


def build(symbols: int, hours: int, seed: int = 11) -> CandleBook:
    rng = np.random.default_rng(seed)
    sectors = rng.normal(0, 0.01, (50, hours))
    book = CandleBook("1h", keep=hours + 2)
    start = (1_800_000_000_000 // HOUR) * HOUR
    for index in range(symbols):
        sector = sectors[index % 50]
        weight = rng.uniform(0.2, 0.95)
        returns = weight * sector + (1 - weight) * rng.normal(0, 0.01, hours)
        closes = 10.0 * np.exp(np.cumsum(returns))
        volumes = rng.lognormal(14, 1.5, hours)
        symbol = f"S{index:04d}USDC"
        for hour in range(hours):
            book.add(symbol, start + hour * HOUR, float(closes[hour]), float(volumes[hour]))
    return book


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument(
        "--candles", type=int, default=720, help="hourly candles per symbol (720: 30 days)"
    )
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    hours = args.candles
    loading = time.perf_counter()
    book = build(args.symbols, hours)
    took = time.perf_counter() - loading
    print(f"built {args.symbols} symbols x {hours} hourly candles in {took:.1f} s")
    chain = build_chain(
        ["volume", "spread", "market_cap", "volatility", "score", "correlation", "top"],
        {
            "min_volume_24h": 5_000_000,
            "max_spread_percent": 0.1,
            "unknown_spread": "keep",
            "min_market_cap": 50_000_000,
            "unknown_market_cap": "keep",
            "volatility_range": (0.02, 0.15),
            "score_weights": {"volume": 0.5, "volatility": 0.3, "momentum": 0.2},
            "correlation_limit": 0.8,
            "universe_size": args.size,
        },
    )
    policy = RotationPolicy(
        size=args.size,
        entry_rotations=2,
        entry_margin=0.2,
        exit_misses=2,
        max_changes=3,
        min_residency=0,
    )
    symbols = book.symbols()
    spreads = {s: 0.02 + (i % 13) / 100 for i, s in enumerate(symbols)}
    caps = {s: 1e6 * (i % 997) for i, s in enumerate(symbols)}
    timings = []
    parts: dict[str, list[float]] = {"statistics": [], "filter chain": [], "rotation plan": []}
    state = UniverseState()
    for _ in range(args.repeat):
        started = time.perf_counter()
        stats = book.compute(window=hours)
        computed = time.perf_counter()
        candidates = [
            Candidate(s, stats.stats.get(s), spreads.get(s), caps.get(s)) for s in symbols
        ]
        result = run_chain(chain, candidates, stats.returns)
        chained = time.perf_counter()
        rotation = plan_rotation(
            state,
            {c.symbol: c.score or 0.0 for c in result.selected},
            blacklist=frozenset(),
            held=frozenset(),
            policy=policy,
            now=time.time(),
        )
        state = rotation.state
        finished = time.perf_counter()
        timings.append(finished - started)
        parts["statistics"].append(computed - started)
        parts["filter chain"].append(chained - computed)
        parts["rotation plan"].append(finished - chained)
    dropped = {}
    for verdict in result.verdicts.values():
        step = verdict.split(":", 1)[0]
        dropped[step] = dropped.get(step, 0) + 1
    print(f"selected {len(rotation.selected)}: {', '.join(sorted(rotation.selected)[:5])} ...")
    print("verdicts:", ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    print(
        f"rotation: median {statistics.median(timings):.3f} s, max {max(timings):.3f} s "
        f"over {args.repeat} runs   (target <= {TARGET:g} s)"
    )
    print(
        "of which (median): "
        + ", ".join(f"{name} {statistics.median(values):.3f} s" for name, values in parts.items())
    )


if __name__ == "__main__":
    main()
