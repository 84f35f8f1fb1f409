"""A longer hunt of the wide model of the Ledger's book than the suite's fixed draw (not
collected by pytest: run it by hand, or on a schedule).

    .venv/bin/python -m tests.hunt_ledger_book [EXAMPLES] [--steps N] [--busy]
                                               [--no-stale-exits] [--seed N]

``--busy`` adds a rule making several round trips of a symbol at once, so that many
orders of a symbol come between two views. ``--no-stale-exits`` leaves out stops'
exits for holdings our SELL closed (the model's Portfolio shows when each holding was
opened; without that time such an exit may still sell the next holding:
``test_ledger_closed_entry``). Exits non-zero with the failing sequence printed when
an invariant breaks.
"""

from __future__ import annotations

import argparse

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from tests.test_ledger_book_wide_model import BETTER, SYMBOLS, WideLedgerBookMachine


class BusyLedgerBookMachine(WideLedgerBookMachine):
    @rule(
        symbol=st.sampled_from(SYMBOLS),
        trips=st.integers(1, 12),
        better=st.sampled_from(BETTER),
        last=st.sampled_from(["filled", "unknown", "reserved"]),
    )
    def round_trips(self, symbol: str, trips: int, better: float, last: str) -> None:
        """BUYs and SELLs of ``symbol`` one after the other, each settled at once but
        the last SELL (filled, unknown, or left reserved)."""
        for trip in range(trips):
            for side in ("BUY", "SELL"):
                before = set(self.orders)
                self._reserve(symbol, side, None)
                new = [order for key, order in self.orders.items() if key not in before]
                if not new:
                    continue
                order = new[0]
                outcome = last if trip == trips - 1 and side == "SELL" else "filled"
                if outcome == "reserved":
                    continue
                if not order.executed:
                    self._execute(order, better)
                filled = outcome == "filled" or None
                self.book.settle(
                    order.reservation_id, filled, symbol=symbol, side=order.side, now=self.now
                )
                order.settled = True
                order.unknown = filled is None


def _without_stale_exits(machine: type[WideLedgerBookMachine]) -> type[RuleBasedStateMachine]:
    class Machine(machine):  # type: ignore[valid-type,misc]
        @precondition(lambda self: False)
        @rule(data=st.data())
        def stale_stop_exit(self, data: st.DataObject) -> None:
            """Left out."""

    return Machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("examples", type=int, nargs="?", default=5000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--no-stale-exits", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    machine: type[RuleBasedStateMachine] = (
        BusyLedgerBookMachine if args.busy else WideLedgerBookMachine
    )
    if args.no_stale_exits:
        machine = _without_stale_exits(machine)  # type: ignore[arg-type]
    if args.seed is not None:
        machine = seed(args.seed)(machine)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=args.examples,
            stateful_step_count=args.steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"no failure in {args.examples} examples of {args.steps} steps")


if __name__ == "__main__":
    main()
