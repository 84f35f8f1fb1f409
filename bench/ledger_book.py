"""The Ledger's book under a large book: the work of one order as Ledger.handle does it
(expiry and the risk checks' numbers on the Reserve, the reservation, the settlement,
a snapshot after each), with N of our fills already in the book that the Portfolio does
not show yet, and the work of taking a fetched view.

    python bench/ledger_book.py [--sizes 100,1000,10000,100000] [--symbols 50,500]
                                [--round-trips]

Prints microseconds of CPU per order for each size and number of symbols (target: flat
across sizes), and milliseconds per fetched view. Pure Python, no server. The fills are
BUYs, or with ``--round-trips`` a BUY and its SELL at one price (what the pipeline's
benchmark makes against the stub): the view's balances match both "neither shown" and
"both shown" of every pair, and the quote is tried on their combinations.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordinator.trading.ledger_book import BookOrder, LedgerBook, OrderState  # noqa: E402
from coordinator.trading.portfolio_numbers import PortfolioNumbers  # noqa: E402
from coordinator.trading.signals import Side  # noqa: E402
from coordinator.trading.validation import (  # noqa: E402
    Balance,
    OrderPlan,
    PortfolioView,
    PositionView,
)

START = 1_800_000_000.0
QUOTE = "USDC"


def symbols(count: int) -> list[str]:
    return [f"S{index:03d}{QUOTE}" for index in range(count)]


def fetched(names: list[str], at: float) -> PortfolioView:
    """Cash, and a holding of each symbol (none of our orders shown)."""
    balances = {QUOTE: Balance(1e12, 1e12, 1e12)}
    positions = {}
    for name in names:
        base = name[: -len(QUOTE)]
        balances[base] = Balance(100.0, 100.0, 1000.0)
        positions[name] = PositionView(name, 100.0, 10.0, 1000.0, 0.0)
    return PortfolioView(balances=balances, positions=positions, fetched_at=at)


def plan(symbol: str, quantity: float, side: Side = Side.BUY) -> OrderPlan:
    return OrderPlan(symbol, side, quantity, 10.0, quantity * 10.0, None)


def populate(book: LedgerBook, names: list[str], count: int, round_trips: bool = False) -> None:
    """``count`` fills of ours the view does not show, spread over ``names`` (BUYs, or
    pairs of a BUY and its SELL)."""
    fields = {f.name for f in dataclasses.fields(LedgerBook)}
    if "orders" in fields:
        # The book before it kept its orders by base asset: one settlement costs the
        # whole book there, so the fills are put in directly and laid once.
        for index in range(count):
            number = book.last_id + 1
            order = BookOrder(
                reservation_id=f"{book.prefix}-{number}",
                plan=plan(names[index % len(names)], 1.0 + index % 7),
                owner="bench",
                reserved_at=START,
                expires_at=START + book.settle_window,
                state=OrderState.FILLED,
                base_before=100.0,
                base_after=101.0,
                held_before=100.0,
                held_after=101.0,
                number=number,
                filled_before=number,
            )
            book.last_id = number
            book.orders[order.reservation_id] = order  # type: ignore[index]
        book.view = book._merged()
        return
    for index in range(count):
        symbol = names[(index // 2 if round_trips else index) % len(names)]
        side = Side.SELL if round_trips and index % 2 else Side.BUY
        quantity = 1.0 + (index // 2 if round_trips else index) % 7
        order = book.reserve(plan(symbol, quantity, side), owner="bench", now=START)
        book.settle(order.reservation_id, True, symbol=symbol, side=side, now=START)


def one_order(book: LedgerBook, numbers: PortfolioNumbers, symbol: str, now: float) -> LedgerBook:
    """A Reserve and its Settle as the Ledger handles them; the kept snapshot."""
    book.expire(now)
    try:
        numbers.ledger_state(book, now, symbol)  # type: ignore[call-arg]
    except TypeError:
        numbers.ledger_state(book, now)
    order = book.reserve(plan(symbol, 2.0), owner="validator-0#1", now=now, signal_id="x")
    kept = book.snapshot()
    book.settle(order.reservation_id, True, symbol=symbol, side=Side.BUY, now=now)
    kept = book.snapshot()
    return kept


def measure(
    size: int, count: int, budget: float, round_trips: bool = False
) -> tuple[float, float, int]:
    """(microseconds per order, milliseconds per fetched view, orders timed)."""
    names = symbols(count)
    book = LedgerBook(quote=QUOTE, fee_rate=0.001, lifetime=90.0, settle_window=180.0)
    book.fetched_view(fetched(names, START), START)
    populate(book, names, size, round_trips)
    numbers = PortfolioNumbers()
    done, now = 0, START + 1.0
    started = time.process_time()
    while done < 5 or (time.process_time() - started < budget and done < 20_000):
        one_order(book, numbers, names[done % len(names)], now)
        done += 1
        now += 0.001
    per_order = (time.process_time() - started) / done * 1e6
    views, started = 0, time.process_time()
    while views < 2 or (time.process_time() - started < budget and views < 50):
        book.fetched_view(fetched(names, now), now)
        views += 1
        now += 0.001
    per_view = (time.process_time() - started) / views * 1e3
    return per_order, per_view, done


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--symbols", default="50,500")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per measure")
    parser.add_argument(
        "--round-trips", action="store_true", help="fills in pairs: a BUY and its SELL"
    )
    args = parser.parse_args()
    print("fills in the book | symbols | us per order (reserve, settle, snapshots) | ms per view")
    for count in (int(c) for c in args.symbols.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            per_order, per_view, done = measure(size, count, args.budget, args.round_trips)
            print(
                f"{size:>17,} | {count:>7} | {per_order:>12,.1f} ({done} orders)"
                f"{'':>16} | {per_view:>10,.1f}",
                flush=True,
            )
    print("target: flat across sizes (the Ledger's share of a pipeline order <= 0.05 ms)")


if __name__ == "__main__":
    main()
