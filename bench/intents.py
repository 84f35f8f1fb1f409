"""The intent gate alone: claims from several Validator threads against a durable
embedded PostgreSQL (fsync on), as fast as they come.

    python bench/intents.py [--threads 4] [--claims 2000] [--pause-ms 0] [--group-wait 0.0005]

Each thread claims its own ids one after another (``--pause-ms`` between two: the rest
of an order's path), as each Validator does. Prints claims/s, this process's CPU per
claim, the commits made (the claims per commit show the grouping), and how long a
claim takes. The pipeline's target of 2,000 orders/s asks the gate for at least that
many claims a second; its p99 of 2 ms from intake to order request at 20 signals/s
(``--threads 1 --pause-ms 50``) holds a claim, so the claim's own p99 is its floor.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordinator.infra.embedded import EmbeddedPostgres  # noqa: E402
from coordinator.infra.intent_claims import ClaimResult, IntentClaims  # noqa: E402
from coordinator.infra.journal import Journal  # noqa: E402
from coordinator.infra.store import apply_migrations  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def intent(client_order_id: str) -> dict[str, object]:
    return {
        "client_order_id": client_order_id,
        "signal_id": "s-" + client_order_id,
        "symbol": "BTCUSDC",
        "side": "BUY",
        "quantity": 0.01,
        "reference_price": 50_000.0,
        "state": "pending",
        "at": time.time(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--claims", type=int, default=2000, help="per thread")
    parser.add_argument("--pause-ms", type=float, default=0.0)
    parser.add_argument("--group-wait", type=float, default=0.0005)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", durable=True).start()
        try:
            apply_migrations(postgres.dsn)
            try:
                claims = IntentClaims(
                    postgres.dsn,
                    Journal(Path(tmp) / "journal.jsonl"),
                    timeout=5,
                    group_wait=args.group_wait,
                )
            except TypeError:  # an IntentClaims without group commit
                claims = IntentClaims(postgres.dsn, Journal(Path(tmp) / "journal.jsonl"), timeout=5)
            refused: list[ClaimResult] = []
            took: list[float] = []

            def validator(index: int) -> None:
                claims.warm()
                for n in range(args.claims):
                    began = time.perf_counter()
                    result = claims.claim(intent(f"bench-{index}-{n}"), first_seen=None).result
                    took.append(time.perf_counter() - began)
                    if result is not ClaimResult.CLAIMED:
                        refused.append(result)
                    if args.pause_ms:
                        time.sleep(args.pause_ms / 1000.0)

            threads = [
                threading.Thread(target=validator, args=(i,), name=f"validator-{i}")
                for i in range(args.threads)
            ]
            cpu = cpu_seconds()
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds() - cpu
            total = args.threads * args.claims
            print(
                f"{args.threads} threads x {args.claims} claims, pause {args.pause_ms:g} ms, "
                f"group wait {args.group_wait * 1000:g} ms"
            )
            print(f"claims: {total / elapsed:,.0f}/s   (target >= 2,000/s)")
            print(f"CPU per claim (this process): {cpu / total * 1000:.3f} ms")
            ranked = sorted(took)

            def at(share: float) -> float:
                return ranked[min(len(ranked) - 1, int(share * len(ranked)))] * 1000

            print(
                f"a claim took: p50 {at(0.5):.2f} ms  p90 {at(0.9):.2f} ms  "
                f"p99 {at(0.99):.2f} ms  max {ranked[-1] * 1000:.2f} ms   "
                "(the floor of the pipeline's p99 <= 2 ms at 20 signals/s)"
            )
            batches = getattr(claims, "batches", None)
            if batches is not None and batches[0]:
                print(f"commits: {batches[0]}, {batches[1] / batches[0]:.2f} claims per commit")
            else:
                print(f"commits: {total} (one per claim)")
            if refused:
                print(f"not claimed: {len(refused)} (should be 0)")
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
