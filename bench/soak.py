"""Soak: the real processes under random faults, then the money-safety invariants checked.

    python bench/soak.py --minutes N [--rate 3] [--seed S] [--quiet 90]

Starts an embedded Redis and PostgreSQL (durable), ``coordinator paper-exchange`` (the
BUY fee taken in the base asset when it offers ``--fee-in-base``) and ``coordinator
run``, each its own process on loopback. For N minutes it publishes RootTrading
consensus signals on the Redis Stream and on pub/sub (some on both, a few malformed),
1m candles for every symbol (shocks push held positions through their stops), while a
chaos loop injects, at random: actor crashes (the drills routes), a SIGKILL and restart
of the coordinator, 5xx answers and answers too late from the Trader (the paper
exchange's knobs; a 5xx after a fill too, when it offers ``fail_after_fill``), restarts
of PostgreSQL and of Redis. Then the faults stop, the load
stops, and once the coordinator is quiet (or ``--quiet`` seconds have passed) it checks,
from the exchange's own order log and from the store:

- every signal published (or stored) decided exactly once;
- no client order id requested twice (a re-send after a 5xx answer aside), none
  without a stored intent;
- no sell above the holding (none refused for insufficient balance), no buy above the
  funds;
- no reservation left in the Ledger;
- every unknown order reconciled or listed at ``GET /orders/unknown``, and each stored
  order state agreeing with the exchange's fills.

It prints a table and each violation with its evidence; the exit code is 1 when a
violation is found (2 when the soak itself could not run). Every process it started is
stopped at the end, on Ctrl-C and on errors too.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.soak_checks import Facts, check, gather, table  # noqa: E402
from bench.soak_load import SYMBOLS, Holdings, Market, Observer, SignalSource  # noqa: E402
from bench.soak_stack import SIGNALS_CHANNEL, SIGNALS_STREAM, Stack, fee_in_base_supported  # noqa: E402

READ_TIMEOUT = 2.0
COORDINATOR_ENV = {
    "SIGNALS_CHANNEL": SIGNALS_CHANNEL,
    "SIGNALS_STREAM_ENABLED": "true",
    "SIGNALS_STREAM": SIGNALS_STREAM,
    "STREAM_CLAIM_IDLE": "10",
    "TRADING_SYMBOLS": ",".join(SYMBOLS),
    "CORE_PAIRS": ",".join(SYMBOLS),
    "UNIVERSE_SIZE": str(len(SYMBOLS)),
    "MAX_CONCURRENT_TRADES": "6",
    "MAX_EXPOSURE_PERCENT": "40",
    # Losses are the point here: the guards would stop every BUY after a few minutes.
    "MAX_DRAWDOWN_PERCENT": "100",
    "DAILY_LOSS_LIMIT_PERCENT": "100",
    "STOP_LOSS_COOLDOWN": "0",
    "AUTO_BLACKLIST_STOP_LOSSES": "1000",
    "MAX_ORDERS_PER_MINUTE": "100",
    "SIGNAL_TIMEOUT": "30",
    "TRADER_READ_TIMEOUT": str(READ_TIMEOUT),
    "HEALTH_CHECK_INTERVAL": "2",
    "BREAKER_OPEN_SECONDS": "3",
    "POSITIONS_REFRESH_INTERVAL": "2",
    "STOP_LOSS_PERCENT": "3",
    "STOP_EXIT_RETRY_MAX": "5",
    "STOP_EXIT_TIMEOUT": "20",
    "STOP_EXIT_SETTLE": "20",
    "SUPERVISOR_MAX_RESTARTS": "100",
}
FAULTS = {
    "actor_crash": 4,
    "coordinator_kill": 1,
    "trader_5xx": 1.5,
    "trader_timeout": 1.5,
    "trader_5xx_after_fill": 1,
    "postgres_restart": 1,
    "redis_restart": 1,
}


class Interrupted(Exception):
    """SIGTERM: stop as on Ctrl-C."""


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.fee_in_base = fee_in_base_supported()
        self.stack = Stack(tmp, COORDINATOR_ENV, fee_in_base=self.fee_in_base)
        self.faults: Counter[str] = Counter()
        self.windows: list[tuple[float, float, str]] = []
        self.unplanned: list[str] = []
        self.start = time.monotonic()
        self.holdings = Holdings()
        self.market: Market | None = None
        self.signals: SignalSource | None = None
        self.observer: Observer | None = None

    # --- the run ----------------------------------------------------------------------

    def run(self) -> int:
        stack = self.stack
        offered = "yes" if self.fee_in_base else "not offered"
        print(f"starting the stack (fee in base asset: {offered})")
        stack.start()
        assert stack.redis is not None and stack.postgres is not None
        if "trader_5xx_after_fill" in self.args.faults and not stack.knobs(fail_after_fill=0):
            print("the paper exchange cannot fail after a fill: trader_5xx_after_fill left out")
            self.args.faults.remove("trader_5xx_after_fill")
        self.start = time.monotonic()
        self.observer = Observer(
            stack.redis.url, stack.paper_url, stack.postgres.dsn, self.holdings
        ).start()
        self.market = Market(
            stack.redis.url, random.Random(self.rng.random()), self.holdings
        ).start()
        self.signals = SignalSource(
            stack.redis.url,
            random.Random(self.rng.random()),
            self.market,
            self.holdings,
            self.args.rate,
            stack.postgres.dsn,
        ).start()
        until = self.start + self.args.minutes * 60
        print(f"soaking for {self.args.minutes:g} min (seed {self.args.seed})")
        while time.monotonic() < until:
            self.idle(min(until - time.monotonic(), self.rng.uniform(3, 8)))
            if time.monotonic() < until:
                self.inject(until)
        self.signals.stop()
        self.market.calm = True
        self.stack.knobs(error_rate=0.0, timeout=0.0)
        self.stack.knobs(fail_after_fill=0)
        print(f"faults over ({self._counts()}); waiting for the coordinator to be quiet")
        self.wait_quiet()
        self.observer.poll_unknown()
        self.observer.stop()
        facts = gather(
            Facts(
                published=list(self.signals.published),
                decided_events=dict(self.observer.decided_events),
                unknown_seen=dict(self.observer.unknown_seen),
                fault_windows=self.windows,
                unplanned_exits=self.unplanned,
                start=self.start,
                late_after=READ_TIMEOUT,
            ),
            stack,
        )
        verdict = check(facts)
        header = (
            f"soak {self.args.minutes:g} min, seed {self.args.seed}, {self.args.rate:g} signals/s, "
            f"BUY fee in base asset: {'yes' if self.fee_in_base else 'no (option absent)'}, "
            f"{self.market.ticks} ticks, {self.market.shocks} shocks, "
            f"{stack.coordinator_starts} coordinator starts "
            f"({stack.identity_waits} refused: the killed one's identity still live)"
        )
        print()
        print(table(facts, verdict, self.faults, header))
        return 1 if any(verdict.violations.values()) else 0

    def idle(self, seconds: float) -> None:
        """Wait, restarting a coordinator that stopped by itself (a container would)."""
        deadline = time.monotonic() + max(0.0, seconds)
        while time.monotonic() < deadline:
            code = self.stack.coordinator_exit()
            if code is not None:
                at = time.monotonic() - self.start
                tail = self.stack.log_tail("coordinator.log", 5).replace("\n", " | ")
                self.unplanned.append(f"t+{at:.1f}s exit code {code}; log: {tail}")
                print(f"  t+{at:.0f}s the coordinator exited by itself ({code}); restarting it")
                began = time.monotonic()
                self.stack.start_coordinator()
                self.windows.append((began - 30, time.monotonic(), "unplanned exit"))
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def inject(self, until: float) -> None:
        kinds = list(self.args.faults)
        if not kinds:
            return
        kind = self.rng.choices(kinds, weights=[FAULTS[k] for k in kinds])[0]
        began = time.monotonic()
        stack = self.stack
        detail = ""
        try:
            if kind == "actor_crash":
                names = stack.actors()
                name = self.rng.choice(names)
                if not stack.crash_actor(name):
                    return
                kind, detail = f"actor_crash:{name}", name
            elif kind == "coordinator_kill":
                stack.kill_coordinator()
                time.sleep(self.rng.uniform(0, 2))
                stack.start_coordinator()
                self.windows.append((began, time.monotonic() + 2, kind))
            elif kind in ("trader_5xx", "trader_timeout"):
                seconds = self.rng.uniform(3, 10)
                knob = (
                    {"error_rate": 1.0} if kind == "trader_5xx" else {"timeout": READ_TIMEOUT + 1}
                )
                stack.knobs(**knob)
                try:
                    self.idle(min(seconds, until - time.monotonic()))
                finally:
                    stack.knobs(error_rate=0.0, timeout=0.0)
                detail = f"{seconds:.1f}s"
            elif kind == "trader_5xx_after_fill":
                # The Trader's 5xx in rare paths after Binance filled (when the paper
                # exchange can play it): the next orders fill, then answer 500.
                count = self.rng.randint(1, 3)
                if not stack.knobs(fail_after_fill=count):
                    return
                detail = f"next {count} order(s)"
            elif kind == "postgres_restart":
                down = self.rng.uniform(1, 5)
                stack.restart_postgres(down)
                detail = f"down {down:.1f}s"
            elif kind == "redis_restart":
                down = self.rng.uniform(1, 4)
                stack.restart_redis(down)
                self.windows.append((began, time.monotonic() + 2, kind))
                detail = f"down {down:.1f}s"
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            print(f"  t+{began - self.start:.0f}s {kind} could not be injected: {exc}")
            return
        except Exception as exc:
            print(f"  t+{began - self.start:.0f}s {kind} could not be injected: {exc!r}")
            return
        self.faults[kind.split(":")[0]] += 1
        print(f"  t+{began - self.start:.0f}s {kind.split(':')[0]} {detail}".rstrip())

    def wait_quiet(self) -> None:
        """Until every stream signal is decided, no order is pending or sent, nothing is in
        flight and no reservation open, steadily; at most ``--quiet`` seconds."""
        deadline = time.monotonic() + self.args.quiet
        assert self.signals is not None
        stream_ids = [p.signal_id for p in self.signals.published if p.on_stream]
        last: Any = None
        steady_since = time.monotonic()
        while time.monotonic() < deadline:
            self.idle(1.0)
            state = self._quiet_state(stream_ids)
            if state != last:
                last, steady_since = state, time.monotonic()
            if state is None:
                continue
            undecided, open_orders, in_flight, unknown, reserved = state
            # Unknown orders may still be reconciled: wait longer for them to settle.
            settled = time.monotonic() - steady_since >= (15 if unknown else 3)
            # A reservation left open is released by its lifetime at the latest: quiet
            # means none is left (else the check below finds it, past --quiet).
            if not (undecided or open_orders or in_flight or reserved) and settled:
                print(f"quiet after {time.monotonic() - deadline + self.args.quiet:.0f} s")
                return
        print(
            f"not quiet after {self.args.quiet:g} s "
            f"(undecided, open orders, in flight, unknown, reservations: {last})"
        )

    def _quiet_state(self, stream_ids: list[str]) -> tuple[int, int, int, int, int] | None:
        import psycopg2

        assert self.stack.postgres is not None
        try:
            with (
                psycopg2.connect(self.stack.postgres.dsn, connect_timeout=2) as conn,
                conn.cursor() as cur,
            ):
                cur.execute(
                    "SELECT count(*) FROM coordinator_decisions WHERE signal_id = ANY(%s)",
                    (stream_ids,),
                )
                decided = cur.fetchone()[0]
                cur.execute(
                    "SELECT count(*) FILTER (WHERE state IN ('pending', 'sent')),"
                    " count(*) FILTER (WHERE state = 'unknown') FROM coordinator_orders"
                )
                open_orders, unknown = cur.fetchone()
            conn.close()
        except psycopg2.Error:
            return None
        stats = self.stack.get(self.stack.url, "/stats", 3) or {}
        in_flight = stats.get("signals_in_flight")
        return (
            len(stream_ids) - decided,
            open_orders,
            1 if in_flight is None else in_flight,
            unknown,
            stats.get("reservations_open") or 0,
        )

    def _counts(self) -> str:
        return ", ".join(f"{k} {n}" for k, n in self.faults.most_common()) or "none"

    def stop(self) -> None:
        for part in (self.signals, self.market, self.observer):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:
                    print(f"stopping {type(part).__name__}: {exc}", file=sys.stderr)
        self.stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, required=True, help="how long faults are injected")
    parser.add_argument("--rate", type=float, default=3.0, help="signals published per second")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random choices")
    parser.add_argument("--quiet", type=float, default=90.0, help="longest wait for quiet, s")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated fault kinds to inject, among {', '.join(FAULTS)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data and logs directory")
    args = parser.parse_args()
    if not 0 < args.minutes <= 120 or not 0 < args.rate <= 100 or not 0 <= args.quiet <= 600:
        parser.error("--minutes must be in (0, 120], --rate in (0, 100], --quiet in [0, 600]")
    args.faults = [k.strip() for k in args.faults.split(",") if k.strip()]
    if not args.faults or not set(args.faults) <= set(FAULTS):
        parser.error(f"--faults must name some of {', '.join(FAULTS)}")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)

    def interrupted(*_: Any) -> None:
        raise Interrupted()

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGALRM, interrupted)
    # Bounded whatever hangs: the run, the quiet wait, and room for starts and restarts.
    signal.alarm(int(args.minutes * 60 + args.quiet + 300))
    # The soak's own Redis readers reconnect through every Redis restart: that is expected.
    logging.basicConfig(level=logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    soak = Soak(args, tmp)
    code = 2
    try:
        code = soak.run()
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted or out of time: stopping every process started", file=sys.stderr)
        code = 130
    except Exception as exc:
        print(f"the soak failed: {exc!r}; logs in {tmp}", file=sys.stderr)
        args.keep = True
    finally:
        signal.alarm(0)
        soak.stop()
        if args.keep:
            print(f"data and logs kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
