"""Trailing stops under load.

    python bench/stops.py evaluate [--positions 1000] [--ticks 1000000]
    python bench/stops.py redis    [--positions 1000] [--rate 5000] [--seconds 20] [--exits 10]

evaluate  the stop functions alone, in this process: ticks over ``--positions`` positions
          (random walks, every rule set), each tick moving its position's peak and stop
          and checking the trigger; target >= 100,000 ticks/s
redis     an embedded Redis and PostgreSQL (durable), ``coordinator paper-exchange``
          holding ``--positions`` open positions and ``coordinator run``, each in its own
          process; candles published on the market-data channels at ``--rate`` ticks/s,
          of which ``--exits`` per second cross a stop. Measured on the host's monotonic
          clock, shared by the processes, from the crossing tick leaving the publisher
          (just before PUBLISH): to its read by the coordinator, to the sell order
          request leaving the coordinator (target p99 <= 10 ms), and to the request
          arriving at the paper exchange
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import Stack  # noqa: E402
from coordinator.trading.stops import StopParams, open_stop, update_stop  # noqa: E402

RULE_SETS = (
    ("stoploss", "breakeven", "percent"),
    ("stoploss", "ladder"),
    ("stoploss", "atr"),
    ("stoploss", "percent", "atr", "ladder", "breakeven"),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def evaluate(args: argparse.Namespace) -> None:
    params = StopParams()
    rng = random.Random(7)
    states = []
    for index in range(args.positions):
        rules = RULE_SETS[index % len(RULE_SETS)]
        states.append([rules, open_stop(rules, params, 100.0, atr=0.5), 100.0])
    # Ticks prepared beforehand: (position, price); walks with a slight upward drift, so
    # peaks and stops move on a good share of them.
    ticks = []
    prices = [100.0] * args.positions
    for _ in range(args.ticks):
        index = rng.randrange(args.positions)
        prices[index] = max(50.0, prices[index] * (1 + rng.gauss(0.0002, 0.002)))
        ticks.append((index, prices[index]))
    triggered = 0
    started = time.perf_counter()
    for index, price in ticks:
        entry = states[index]
        state, hit = update_stop(entry[1], price, entry[0], params, 0.5)
        entry[1] = state
        if hit:
            triggered += 1
            # Re-enter at this price, as if a new position had opened.
            entry[1] = open_stop(entry[0], params, price, atr=0.5)
    elapsed = time.perf_counter() - started
    print(
        f"{args.ticks:,} ticks over {args.positions:,} positions in {elapsed:.2f} s: "
        f"{args.ticks / elapsed:,.0f} ticks/s   (target >= 100,000 ticks/s); "
        f"{triggered:,} triggers"
    )


def redis_path(args: argparse.Namespace, tmp: Path) -> None:
    symbols = [f"P{index:04d}USDC" for index in range(args.positions)]
    stack = Stack(
        tmp,
        {
            "TRADING_SYMBOLS": ",".join(symbols[:50]),
            "POSITIONS_REFRESH_INTERVAL": "2",
            "STOP_RULES": "stoploss,breakeven,percent",
            "STOP_LOSS_PERCENT": "5",
        },
        # The Trader is another service on another machine; here it shares the two cores,
        # so it does not also parse the 5,000 ticks a second (it fills at the order's
        # reference price, the crossing tick's).
        paper=True,
        paper_args=("--no-market-data",),
    )
    try:
        seeded = requests.post(
            stack.paper_url + "/_paper/positions",
            json=[{"symbol": s, "quantity": 1.0, "entry_price": 100.0} for s in symbols],
            timeout=30,
        )
        seeded.raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            count = requests.get(stack.url + "/trailing-stops", timeout=5).json()["count"]
            # The Ledger sizes the sells: its view must hold the positions too.
            held = requests.get(stack.url + "/stats", timeout=5).json()["active_positions"]
            if count >= args.positions and (held or 0) >= args.positions:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"only {count} of {args.positions} positions watched")
        print(f"{args.positions} positions watched")
        rng = random.Random(11)
        client = stack.client
        pipe = client.pipeline(transaction=False)
        total = int(args.rate * args.seconds)
        crossing_every = max(1, int(args.rate / args.exits))
        to_cross = list(symbols)
        rng.shuffle(to_cross)
        crossings: dict[str, float] = {}
        batch = max(1, int(args.rate / 500))  # 2 ms of ticks per round trip
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        for index in range(total):
            if index % crossing_every == 0 and to_cross:
                # A crossing tick goes alone, timed just before it leaves.
                pipe.execute()
                symbol = to_cross.pop()
                body = _candle(symbol, 90.0, now_ms)
                channel = f"roottrading:market:data:{symbol.lower()}:1m"
                crossings[symbol] = time.monotonic()
                client.publish(channel, body)
            else:
                symbol = symbols[rng.randrange(args.positions)]
                if symbol in crossings:
                    continue
                price = round(100.0 + rng.random() * 0.9, 4)  # never near a stop
                pipe.publish(
                    f"roottrading:market:data:{symbol.lower()}:1m",
                    _candle(symbol, price, now_ms),
                )
            if (index + 1) % batch == 0:
                pipe.execute()
                due = started + (index + 1) / args.rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        pipe.execute()
        published = time.perf_counter() - started
        print(
            f"published {total:,} ticks in {published:.1f} s "
            f"({total / published:,.0f} ticks/s), {len(crossings)} crossing a stop"
        )
        deadline = time.monotonic() + 60
        arrivals: dict[str, float] = {}
        while time.monotonic() < deadline and len(arrivals) < len(crossings):
            orders = requests.get(stack.paper_url + "/_paper/orders", timeout=10).json()["orders"]
            arrivals = {
                o["symbol"]: o["mono"]
                for o in orders
                if o["side"] == "SELL" and o["symbol"] in crossings
            }
            time.sleep(0.5)
        sells = [o for o in orders if o["side"] == "SELL"]
        latencies = [(arrivals[s] - crossings[s]) * 1000 for s in arrivals]
        print(
            f"sell orders at the paper exchange: {len(sells)} "
            f"({len(arrivals)} of {len(crossings)} crossings; "
            f"{len(sells) - len(arrivals)} others)"
        )
        # The host's monotonic clock is shared by the processes: the coordinator keeps,
        # with each exit, when its tick was read; the order left intake_to_order_ms later.
        read_and_left = {
            symbol: (float(json.loads(payload)["tick_mono"]), ms)
            for symbol, payload, ms in stack.rows(
                """SELECT s.symbol, s.payload, d.intake_to_order_ms
                   FROM coordinator_decisions d JOIN coordinator_signals s USING (signal_id)
                   WHERE s.source = 'trailing_stop' AND d.intake_to_order_ms IS NOT NULL"""
            )
            if symbol in crossings
        }
        figures = (
            (
                "tick published -> tick read by the coordinator",
                [(read - crossings[s]) * 1000 for s, (read, _) in read_and_left.items()],
                "",
            ),
            (
                "tick read -> sell order request leaving the coordinator",
                [ms for _, ms in read_and_left.values()],
                "",
            ),
            (
                "tick published -> sell order request leaving the coordinator",
                [(read - crossings[s]) * 1000 + ms for s, (read, ms) in read_and_left.items()],
                "   (target p99 <= 10 ms)",
            ),
            ("tick published -> sell order request at the exchange", latencies, ""),
        )
        for label, values, target in figures:
            if values:
                print(
                    f"{label}: p50 {statistics.median(values):.2f} ms  "
                    f"p90 {percentile(values, 0.9):.2f} ms  "
                    f"p99 {percentile(values, 0.99):.2f} ms  max {max(values):.2f} ms"
                    f" ({len(values)} exits){target}"
                )
        outcomes = stack.rows(
            """SELECT d.outcome, coalesce(d.reason, ''), count(*), min(d.detail)
               FROM coordinator_decisions d JOIN coordinator_signals s USING (signal_id)
               WHERE s.source = 'trailing_stop' GROUP BY 1, 2 ORDER BY 3 DESC"""
        )
        for outcome, reason, n, detail in outcomes:
            print(f"exits {outcome} {reason}: {n}" + (f" (e.g. {detail})" if reason else ""))
        stats = requests.get(stack.url + "/stats", timeout=10).json()
        print(f"trailing_stops_active at the end: {stats['trailing_stops_active']}")
    finally:
        stack.stop()


def _candle(symbol: str, price: float, time_ms: int) -> str:
    return json.dumps(
        {
            "symbol": symbol,
            "timeframe": "1m",
            "time": time_ms // 60_000 * 60_000,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 1.0,
            "is_closed": False,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("evaluate")
    one.add_argument("--positions", type=int, default=1000)
    one.add_argument("--ticks", type=int, default=1_000_000)
    two = commands.add_parser("redis")
    two.add_argument("--positions", type=int, default=1000)
    two.add_argument("--rate", type=float, default=5000.0)
    two.add_argument("--seconds", type=float, default=20.0)
    two.add_argument("--exits", type=float, default=10.0, help="crossing ticks per second")
    args = parser.parse_args()
    if args.command == "evaluate":
        evaluate(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        redis_path(args, Path(tmp))


if __name__ == "__main__":
    main()
