"""Trailing stops under load.

    python bench/stops.py evaluate [--positions 1000] [--ticks 1000000]
    python bench/stops.py redis [--paper] [--positions 1000] [--rate 5000] [--seconds 20]
                                [--exits 10] [--publishers 2] [--profile FILE]

evaluate  the stop functions alone, in this process: ticks over ``--positions`` positions
          (random walks, every rule set), each tick moving its position's peak and stop
          and checking the trigger; target >= 100,000 ticks/s
redis     an embedded Redis and PostgreSQL (durable), the minimal Trader and Portfolio of
          bench/trader_stub.py (``--paper``: ``coordinator paper-exchange``) holding
          ``--positions`` open positions, and ``coordinator run`` (its settings at their
          defaults but for the stop rules), each in its own process. Candles are
          published on the market-data channels at ``--rate`` ticks/s by
          ``--publishers`` processes (bench/stops_feed.py: raw pipelined PUBLISH, so that
          the publisher is not the limit; the rate achieved is printed), never near a
          stop, and ``--exits`` per second cross one, each alone and timed just before
          it is written. Measured on the host's monotonic clock, shared by the
          processes, from the crossing tick's write: to its read by the coordinator, to
          the sell order request leaving the coordinator (target p99 <= 5 ms at 1,000
          positions and 5,000 ticks/s, <= 10 ms at 10,000 and 20,000 ticks/s), and to the
          request arriving at the Trader; and the coordinator's CPU per tick, in all and
          by thread (bench/cpu.py). ``--profile FILE``: py-spy of the coordinator for the
          run (``.txt``: collapsed stacks of the GIL holder, one line per stack)
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import Stack  # noqa: E402
from bench.stops_feed import Background, Probe  # noqa: E402
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
    symbols = [f"P{index:05d}USDC" for index in range(args.positions)]
    stack = Stack(
        tmp,
        {
            "TRADING_SYMBOLS": ",".join(symbols[:50]),
            "STOP_RULES": "stoploss,breakeven,percent",
            "STOP_LOSS_PERCENT": "5",
        },
        # The Trader is another service on another machine; here it shares the two cores,
        # so the paper exchange does not also parse the ticks (it fills at the order's
        # reference price, the crossing tick's). The stub follows no market data.
        paper=args.paper,
        paper_args=("--no-market-data",),
    )
    seed_path, orders_path = (
        ("/_paper/positions", "/_paper/orders")
        if args.paper
        else ("/_stub/positions", "/_stub/orders")
    )
    try:
        seeded = requests.post(
            stack.trader_url + seed_path,
            json=[{"symbol": s, "quantity": 1.0, "entry_price": 100.0} for s in symbols],
            timeout=60,
        )
        seeded.raise_for_status()
        _wait_watched(stack, args.positions)
        print(f"Trader: {stack.trader_name}; {args.positions:,} positions watched")
        rng = random.Random(11)
        crossing = min(int(args.exits * args.seconds), args.positions // 2)
        to_cross = rng.sample(symbols, crossing)
        quiet = sorted(set(symbols) - set(to_cross))
        background = Background(
            stack.redis.url, quiet, args.rate, args.seconds, processes=args.publishers
        )
        probe = Probe(stack.redis.url)
        read_before = _ticks_read(stack)
        spy = stack.profile(args.profile)
        cpu_before = stack.cpu()
        start_at = time.monotonic() + 1.0
        background.start(start_at)
        # The crossings spread evenly over the run, none in its first or last half second.
        gap = max(0.0, args.seconds - 1.0) / max(1, crossing)
        for n, symbol in enumerate(to_cross):
            due = start_at + 0.5 + n * gap
            time.sleep(max(0.0, due - time.monotonic()))
            probe.cross(symbol, 90.0)
        sent, took = background.join()
        cpu = stack.cpu().since(cpu_before)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(120)
        probe.close()
        ticks = sent + crossing
        print(
            f"published {ticks:,} ticks in {took:.1f} s: {ticks / took:,.0f} ticks/s "
            f"achieved of {args.rate:,.0f} asked ({args.publishers} publisher processes), "
            f"{crossing} crossing a stop"
        )
        crossings = probe.crossings
        arrivals = _arrivals(stack.trader_url + orders_path, crossings)
        _report(stack, crossings, arrivals)
        # Redis drops a subscriber whose unread messages pass its output buffer limit:
        # what was published meanwhile is never read.
        lost = [
            line.strip()
            for line in (tmp / "coordinator.log").read_text(errors="replace").splitlines()
            if "subscription lost" in line
        ]
        print(
            f"ticks read by the coordinator: {_ticks_read(stack) - read_before:,} of {ticks:,}; "
            f"market-data subscription lost {len(lost)} times"
            + (f" (first: {lost[0][-160:]})" if lost else "")
        )
        print(
            f"coordinator CPU per tick: {cpu.seconds / ticks * 1e6:.1f} us "
            f"({cpu.seconds:.2f} s for {ticks:,} ticks, {cpu.seconds / took:.0%} of a core)"
        )
        parts = sorted(cpu.by_stage.items(), key=lambda item: -item[1])
        print(
            "  by thread, us per tick: "
            + ", ".join(f"{name} {s / ticks * 1e6:.1f}" for name, s in parts[:10] if s > 0)
        )
        stats = requests.get(stack.url + "/stats", timeout=30).json()
        print(f"trailing_stops_active at the end: {stats.get('trailing_stops_active')}")
    finally:
        stack.stop()


def _ticks_read(stack: Stack) -> int:
    stats = requests.get(stack.url + "/stats", timeout=30).json()
    return int((stats.get("market_data") or {}).get("read") or 0)


def _wait_watched(stack: Stack, positions: int) -> None:
    deadline = time.monotonic() + 120
    count = held = 0
    while time.monotonic() < deadline:
        stats = requests.get(stack.url + "/stats", timeout=10).json()
        # The Ledger sizes the sells: its view must hold the positions too.
        count, held = stats.get("trailing_stops_active"), stats.get("active_positions")
        if (count or 0) >= positions and (held or 0) >= positions:
            return
        time.sleep(0.5)
    raise SystemExit(f"only {count} of {positions} positions watched ({held} in the Ledger)")


def _arrivals(url: str, crossings: dict[str, float]) -> dict[str, float]:
    """When each crossing's sell request arrived at the Trader (host monotonic clock);
    every sell request counted, so that a second one for a holding shows."""
    deadline = time.monotonic() + 60
    orders: list[dict] = []
    while time.monotonic() < deadline:
        orders = requests.get(url, timeout=30).json()["orders"]
        sells = [o for o in orders if o.get("side") == "SELL"]
        if len({o["symbol"] for o in sells if o["symbol"] in crossings}) >= len(crossings):
            break
        time.sleep(0.5)
    sells = [o for o in orders if o.get("side") == "SELL"]
    arrivals = {o["symbol"]: o["mono"] for o in sells if o["symbol"] in crossings}
    per_symbol: dict[str, int] = {}
    for o in sells:
        per_symbol[o["symbol"]] = per_symbol.get(o["symbol"], 0) + 1
    twice = sum(1 for n in per_symbol.values() if n > 1)
    print(
        f"sell requests at the Trader: {len(sells)} ({len(arrivals)} of {len(crossings)} "
        f"crossings; {len(sells) - len(arrivals)} others; {twice} symbols sold more than once)"
    )
    return arrivals


def _report(stack: Stack, crossings: dict[str, float], arrivals: dict[str, float]) -> None:
    # The host's monotonic clock is shared by the processes: the coordinator keeps,
    # with each exit, when its tick was read; the order left intake_to_order_ms later.
    # The last decisions may still be on their way to the store when the last sell
    # reaches the Trader (a coordinator behind the ticks): waited for, 30 s at most.
    deadline = time.monotonic() + 30
    while True:
        read_and_left = {
            symbol: (float(json.loads(payload)["tick_mono"]), ms)
            for symbol, payload, ms in stack.rows(
                """SELECT s.symbol, s.payload, d.intake_to_order_ms
                   FROM coordinator_decisions d JOIN coordinator_signals s USING (signal_id)
                   WHERE s.source = 'trailing_stop' AND d.intake_to_order_ms IS NOT NULL"""
            )
            if symbol in crossings
        }
        if len(read_and_left) >= len(arrivals) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
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
            "   (target p99 <= 5 ms at 1,000 positions, <= 10 ms at 10,000)",
        ),
        (
            "tick published -> sell order request at the Trader",
            [(arrivals[s] - crossings[s]) * 1000 for s in arrivals],
            "",
        ),
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("evaluate")
    one.add_argument("--positions", type=int, default=1000)
    one.add_argument("--ticks", type=int, default=1_000_000)
    two = commands.add_parser("redis")
    two.add_argument(
        "--paper",
        action="store_true",
        help="the paper exchange as Trader and Portfolio instead of the minimal stub",
    )
    two.add_argument("--positions", type=int, default=1000)
    two.add_argument("--rate", type=float, default=5000.0)
    two.add_argument("--seconds", type=float, default=20.0)
    two.add_argument("--exits", type=float, default=10.0, help="crossing ticks per second")
    two.add_argument("--publishers", type=int, default=2, help="processes publishing the ticks")
    two.add_argument(
        "--profile", type=Path, help="py-spy of the coordinator to this file (.txt: collapsed)"
    )
    args = parser.parse_args()
    if args.command == "evaluate":
        evaluate(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        redis_path(args, Path(tmp))


if __name__ == "__main__":
    main()
