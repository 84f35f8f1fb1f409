"""A backlog of thousands of signals at the Validators, with a short liveness limit.

    python bench/backlog.py [--signals 4000] [--limit 2]

The stack of bench/pipeline.py (embedded Redis and PostgreSQL, the Trader stub,
``coordinator run``), ``MAX_PENDING_SIGNALS`` raised to let every signal in, and the
supervisor's liveness checked every 0.5 s with ``SUPERVISOR_LIVENESS_TIMEOUT=--limit``.
Every signal is published at once, so each Validator's Ping waits behind its share of
the backlog far longer than the limit while it works through it. Prints how long the
backlog took to decide and how many children the supervisor replaced as hung (from
the coordinator's log); a busy Validator is no hung one: target 0 replaced.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import Stack, payloads, publish, wait_decided  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--signals", type=int, default=4000)
    parser.add_argument("--limit", type=float, default=2.0, help="SUPERVISOR_LIVENESS_TIMEOUT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp),
            {
                "MAX_PENDING_SIGNALS": str(args.signals),
                "SUPERVISOR_LIVENESS_INTERVAL": "0.5",
                "SUPERVISOR_LIVENESS_TIMEOUT": f"{args.limit:g}",
                # Counted, not escalated: the run goes on to show every replacement.
                "SUPERVISOR_MAX_RESTARTS": "1000",
            },
        )
        try:
            bodies = payloads(args.signals)
            ids = [signal_id for signal_id, _ in bodies]
            started = time.monotonic()
            publish(stack, bodies, 0)
            wait_decided(stack, ids, timeout=600)
            elapsed = time.monotonic() - started
            log = (Path(tmp) / "coordinator.log").read_text(errors="replace").splitlines()
            hung = [line for line in log if " is hung: " in line]
            print(f"{args.signals} signals at once, liveness limit {args.limit:g} s")
            print(f"all decided in {elapsed:.1f} s")
            print(f"children replaced as hung: {len(hung)}   (target 0)")
            for line in hung[:3]:
                print("  " + line[:200])
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
