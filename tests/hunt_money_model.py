"""A longer hunt of the money model than the suite's 150 examples (not collected by
pytest: run it by hand, or on a schedule).

    .venv/bin/python -m tests.hunt_money_model [EXAMPLES] [--seed N]

Each example is up to 80 steps; a seed at random unless ``--seed`` replays one (the
seed hypothesis prints with a failure that took too long to shrink). Exits non-zero
with the failing sequence printed when an invariant breaks.
"""

from __future__ import annotations

import argparse

from hypothesis import HealthCheck, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.test_money_model import MoneyModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("examples", type=int, nargs="?", default=3000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    machine = MoneyModel if args.seed is None else seed(args.seed)(MoneyModel)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=args.examples,
            stateful_step_count=80,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    print(f"no failure in {args.examples} examples")


if __name__ == "__main__":
    main()
