"""An actor's mailbox alone: tells and asks between two real pykka actors, with pykka's
own inbox and future (``queue.Queue``, ``ThreadingFuture``) and with the coordinator's
(``coordinator/supervisor/mailbox.py``: ``queue.SimpleQueue``, ``LatchFuture``).

    python bench/mailbox.py [--messages 20000] [--rounds 3]

Prints, for each, the CPU of this process per message (both threads) and the wall time
per message: a tell to a busy actor (put and take, no wake-up) and an ask answered at
once (the Validator's ``Reserve`` to the Ledger: two wake-ups).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pykka  # noqa: E402

from coordinator.supervisor.mailbox import LeanMailbox  # noqa: E402


class PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


class LeanEcho(LeanMailbox, pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


def measure(actor_class: type[pykka.ThreadingActor], kind: str, count: int) -> tuple[float, float]:
    """CPU and wall microseconds per message."""
    ref = actor_class.start()
    try:
        for index in range(500):  # warm up
            ref.ask(index)
        cpu, wall = time.process_time(), time.perf_counter()
        if kind == "tell":
            for index in range(count):
                ref.tell(index)
            ref.ask(0)  # every tell handled
        else:
            for index in range(count):
                ref.ask(index)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        ref.stop()
    return cpu / count * 1e6, wall / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.messages} messages, median of {args.rounds} rounds (alternated)")
    for kind in ("tell", "ask"):
        results: dict[str, list[tuple[float, float]]] = {"pykka": [], "coordinator": []}
        for _ in range(args.rounds):
            results["pykka"].append(measure(PykkaEcho, kind, args.messages))
            results["coordinator"].append(measure(LeanEcho, kind, args.messages))
        for name, runs in results.items():
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"  {kind:4} {name:11}: {cpu:6.1f} us CPU, {wall:6.1f} us wall per message")


if __name__ == "__main__":
    main()
