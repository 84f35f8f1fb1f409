"""The cluster drill: N coordinators in cluster mode, real processes, under faults.

    python bench/cluster.py [--quick] [--instances 3] [--positions 200] [--leader-kills 1]

An embedded Redis and PostgreSQL (durable), the Trader stub (bench/trader_stub.py) and
the coordinators (``COORDINATOR_INSTANCES=cluster``, each its own identity, data
directory, port and JSON log; lease 1.5 s, renewed every 0.5 s). First the throughput
with 1, 2, then 3 instances (a burst of signals on the stream each time: stream entries
are shared out among the instances, pub/sub ones are not). Then, with all of them up,
``--positions`` held positions at the stub, ticks raising their peaks, signals on the
stream and on pub/sub in turn, and the faults in order: SIGKILL the leader
(``--leader-kills`` times, restarting it each time), SIGKILL a follower, SIGSTOP the
leader for ``--pause`` seconds then SIGCONT it. A few positions are crashed under their
stop right after each leader fault (the new leader must sell them, once), and all the
rest at the end.

Failover is timed from the fault (the kill or the SIGSTOP, wall clock) to the new
leader's first stop evaluation: the earliest ``updated_at`` in ``coordinator_stops`` of
a probe position whose peak went above the one stored at the fault (the probes get a
rising tick every ``--probe-interval`` s; the killed leader cannot write after the kill,
and the paused one is fenced). Before each leader fault the other ticks hold their
price for 1.5 s, so the peaks stored equal the highest tick; after the fault they are
published 0.1 % lower (no new peak) until the peaks the new leader restored are read:
they must equal the highest tick too.
Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cluster_checks import (  # noqa: E402
    FAILOVER_TARGET,
    Check,
    Deciders,
    Published,
    StubOrder,
    check_client_ids_once,
    check_decided_once,
    check_failover,
    check_leadership_moves,
    check_one_decider,
    check_paused_writes,
    check_peaks,
    check_sold_once,
    check_stop_coverage,
    check_throughput,
    extra_decisions,
    fence_refusals,
    first_evaluation,
    leadership_events,
)
from bench.cluster_feed import ENTRY, Feed  # noqa: E402
from bench.cluster_stack import ClusterStack, Instance  # noqa: E402

SIGNAL_SYMBOLS = [f"S{index:03d}USDC" for index in range(50)]
_HOLD = 1.5
_LOOK_EVERY = 0.1


def coordinator_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "LEADER_LEASE_DURATION": str(args.lease),
        "LEADER_LEASE_RENEW": str(args.lease / 3),
        "TRADING_SYMBOLS": ",".join(SIGNAL_SYMBOLS),
        # No candles of these for the UniverseManager: every one is a core pair, so a BUY
        # is never refused for being outside the universe.
        "CORE_PAIRS": ",".join(SIGNAL_SYMBOLS),
        "UNIVERSE_SIZE": str(len(SIGNAL_SYMBOLS)),
        "MAX_CONCURRENT_TRADES": "1000",
        "MAX_ORDERS_PER_MINUTE": "10000",
        "MAX_EXPOSURE_PERCENT": "100",
        "MAX_DRAWDOWN_PERCENT": "100",
        "DAILY_LOSS_LIMIT_PERCENT": "100",
        "REQUIRE_MARKET_DATA": "false",
        "SIGNAL_TIMEOUT": "60",
        "MAX_PENDING_SIGNALS": "100000",
        "POSITIONS_REFRESH_INTERVAL": "2",
        "STOP_RULES": "stoploss,percent",
        "HTTP_SNAPSHOT_TTL": "0",
    }


class Drill:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.stack = ClusterStack(tmp, args.instances, coordinator_env(args))
        self.held = [f"P{index:04d}USDC" for index in range(args.positions)]
        self.probes = self.held[: args.probes]
        self.feed: Feed | None = None
        self.checks: list[Check] = []
        self.throughput: list[tuple[int, float, float]] = []
        self.failovers: dict[str, float | None] = {}
        self.uncovered: dict[str, dict[str, float | None]] = {}
        self.lease_taken: dict[str, float | None] = {}
        self.paused: tuple[str, float] | None = None
        self.look_gap = 0.0
        """The longest time between two looks at the new leader's stops."""

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    # --- phases -----------------------------------------------------------------------

    def run(self) -> bool:
        stack = self.stack
        stack.start_servers()
        seeded = requests.post(
            stack.stub_url + "/_stub/positions",
            json=[{"symbol": s, "quantity": 1.0, "entry_price": ENTRY} for s in self.held],
            timeout=30,
        )
        seeded.raise_for_status()
        assert stack.redis is not None
        self.feed = Feed(
            stack.redis.url,
            held=self.held,
            probes=self.probes,
            signal_symbols=SIGNAL_SYMBOLS,
            signal_rate=self.args.signal_rate,
            tick_interval=self.args.tick_interval,
            probe_interval=self.args.probe_interval,
        )
        for count, instance in enumerate(stack.instances, start=1):
            stack.start_instance(instance)
            stack.wait_leader(60)
            self.measure_throughput(count)
        self.feed.start()
        self.feed.signals_on = True
        self.wait_watched(60)
        time.sleep(self.args.settle)
        for round_ in range(1, self.args.leader_kills + 1):
            self.leader_fault(f"kill {round_}", pause=False)
        self.follower_kill()
        self.leader_fault("pause", pause=True)
        self.finish()
        return all(check.passed for check in self.checks)

    def measure_throughput(self, count: int) -> None:
        assert self.feed is not None
        # Untimed: every instance has its connections open and its first fetches done.
        warm = self.feed.publish_burst(25 * count)
        self.wait_decided([p.signal_id for p in warm], 60)
        before = len(self.stack.stub_orders())
        started = time.monotonic()
        burst = self.feed.publish_burst(self.args.burst)
        ids = [p.signal_id for p in burst]
        decided = self.wait_decided(ids, 300)
        elapsed = time.monotonic() - started
        orders = len(self.stack.stub_orders(before))
        rate = (decided / elapsed, orders / elapsed)
        self.throughput.append((count, *rate))
        outcomes = self.stack.rows(
            "SELECT coalesce(reason, outcome), count(*) FROM coordinator_decisions"
            " WHERE signal_id = ANY(%s) GROUP BY 1 ORDER BY 2 DESC",
            (ids,),
        )
        self.say(
            f"{count} instance(s): {decided} of {len(ids)} stream signals decided in "
            f"{elapsed:.2f} s: {rate[0]:.0f} signals/s, {orders} orders ({rate[1]:.0f}/s); "
            + ", ".join(f"{what} {n}" for what, n in outcomes)
        )

    def wait_decided(self, ids: list[str], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        decided = 0
        while time.monotonic() < deadline:
            decided = self.stack.rows(
                "SELECT count(*) FROM coordinator_decisions WHERE signal_id = ANY(%s)", (ids,)
            )[0][0]
            if decided >= len(ids):
                break
            time.sleep(0.1)
        return int(decided)

    def wait_watched(self, timeout: float) -> Instance:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.stack.leader()
            watched = None if leader is None else self.stack.watched(leader)
            held = set(self.held) - (self.feed.crashed if self.feed else set())
            if leader is not None and watched is not None and held <= watched:
                self.say(f"{leader.name} leads and watches the {len(held)} positions held")
                return leader
            time.sleep(0.5)
        raise RuntimeError(f"the positions were not all watched by a leader in {timeout:g} s")

    def leader_fault(self, label: str, *, pause: bool) -> None:
        assert self.feed is not None
        stack = self.stack
        for _ in range(5):
            leader = self.wait_watched(30)
            # The store settles on the highest ticks before the fault (flushes every 0.25 s).
            self.feed.set_raising(False)
            time.sleep(_HOLD)
            if stack.lease_holder() == leader.name:
                break
            # The lease moved by itself meanwhile (counted by the leadership check).
            self.say(f"{label}: {leader.name} lost the lease during the hold; again")
            self.feed.set_raising(True)
        still_held = [s for s in self.held if s not in self.feed.crashed]
        checked = [s for s in still_held if s not in self.probes]
        crash = checked[: self.args.crash_per_fault]
        expected = self.feed.highest_ticks([s for s in checked if s not in crash])
        rows = stack.stop_rows()
        before = {key: peak for key, _, peak, _ in rows}
        stored_before = {symbol: peak for _, symbol, peak, _ in rows if symbol in expected}
        self.say(f"{label}: before the fault: {stack.lease_state()}")
        self.say(f"{label}: stored before: {check_peaks(label, expected, stored_before).numbers}")
        lost_at = stack.pause(leader) if pause else stack.kill(leader)
        self.say(f"{label}: {'SIGSTOP' if pause else 'SIGKILL'} leader {leader.name}")
        self.feed.set_dipping(True)
        self.feed.crash(crash)
        watched = [s for s in still_held if s not in crash]
        new = self.observe_failover(label, leader, lost_at, before, watched)
        stored = {symbol: peak for _, symbol, peak, _ in stack.stop_rows() if symbol in expected}
        self.checks.append(check_peaks(f"{label} (coordinator_stops)", expected, stored))
        held = {} if new is None else stack.peaks(new)
        self.checks.append(check_peaks(f"{label} (held by the new leader)", expected, held))
        self.feed.set_dipping(False)
        self.feed.set_raising(True)
        if pause:
            time.sleep(max(0.0, lost_at + self.args.pause - time.time()))
            resumed_at = stack.resume(leader)
            self.paused = (leader.name, resumed_at)
            self.say(f"{label}: SIGCONT {leader.name} after {resumed_at - lost_at:.1f} s")
            time.sleep(self.args.settle)
            return
        stack.start_instance(leader)
        self.say(f"{label}: {leader.name} restarted")
        time.sleep(self.args.settle)

    def observe_failover(
        self,
        label: str,
        old: Instance,
        lost_at: float,
        before: dict[str, float],
        held: list[str],
    ) -> Instance | None:
        stack = self.stack
        probe_keys = {key for key, symbol, _, _ in stack.stop_rows() if symbol in self.probes}
        covered: dict[str, float | None] = dict.fromkeys(held)
        evaluated: float | None = None
        new: Instance | None = None
        deadline = time.monotonic() + 20
        said_stuck = False
        last_look = lost_at
        while time.monotonic() < deadline:
            if new is None:
                new = stack.leader()
                if new is not None and new.name == old.name:
                    new = None
            if new is not None:
                watched = stack.watched(new)
                now = time.time()
                # A position first seen now was watched at some moment since the last look.
                self.look_gap = max(self.look_gap, now - last_look)
                last_look = now
                for symbol in watched or ():
                    if symbol in covered and covered[symbol] is None:
                        covered[symbol] = now - lost_at
            if evaluated is None:
                rows = [(k, p, u) for k, _, p, u in stack.stop_rows() if k in probe_keys]
                evaluated = first_evaluation(lost_at, before, rows)
            if evaluated is not None and all(t is not None for t in covered.values()):
                break
            if new is None and not said_stuck and time.time() - lost_at > 5:
                said_stuck = True
                self.say(f"{label}: no new leader after 5 s: {stack.lease_state()}")
            time.sleep(_LOOK_EVERY)
        failover = None if evaluated is None else evaluated - lost_at
        self.failovers[label] = failover
        self.uncovered[label] = covered
        taken = stack.rows(
            "SELECT extract(epoch FROM acquired_at) FROM coordinator_leases WHERE name = 'leader'"
        )
        self.lease_taken[label] = float(taken[0][0]) - lost_at if taken else None
        times = [t for t in covered.values() if t is not None]
        self.say(
            f"{label}: new leader {new.name if new else '-'}; lease taken after "
            f"{self.lease_taken[label] or float('nan'):.2f} s, first stop evaluation after "
            f"{'-' if failover is None else f'{failover:.2f} s'}; {len(times)} of "
            f"{len(covered)} positions watched again within "
            f"{max(times) if times else float('nan'):.2f} s"
        )
        return new

    def follower_kill(self) -> None:
        stack = self.stack
        leader = stack.wait_leader(30)
        follower = next(i for i in stack.instances if i.alive() and i.name != leader.name)
        stack.kill(follower)
        self.say(f"follower kill: SIGKILL {follower.name} (leader {leader.name})")
        time.sleep(3)
        after = stack.leader()
        self.checks.append(
            Check(
                "a follower's kill leaves the leader alone",
                after is not None and after.name == leader.name,
                f"leader before {leader.name}, 3 s after {after.name if after else '-'}",
            )
        )
        stack.start_instance(follower)
        self.say(f"follower kill: {follower.name} restarted")
        time.sleep(self.args.settle)

    def finish(self) -> None:
        assert self.feed is not None
        stack = self.stack
        self.feed.signals_on = False
        leader = stack.wait_leader(30)
        watched = stack.watched(leader) or set()
        held_now = {
            row["symbol"]
            for row in stack.get(stack.stub_url + "/positions/active", timeout=10) or []
            if row["symbol"] in self.held
        }
        unwatched = sorted(held_now - watched)
        self.checks.append(
            Check(
                "every held position under a stop at the end",
                not unwatched,
                f"{len(held_now)} held, {len(held_now) - len(unwatched)} watched by {leader.name}",
            )
        )
        self.feed.crash(list(self.held))
        self.say("all positions crashed under their stops; waiting for the sells")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = stack.get(stack.stub_url + "/positions/active", timeout=10) or []
            if not any(row["symbol"] in self.held for row in rows):
                break
            time.sleep(0.5)
        published = self.feed.published_signals()
        self.wait_decided([p.signal_id for p in published], 90)
        time.sleep(2)  # late duplicates land in the logs
        self.feed.halt()
        self.gather(published)

    # --- the checks -------------------------------------------------------------------

    def gather(self, published: list[Published]) -> None:
        stack = self.stack
        ids = [p.signal_id for p in published]
        decisions = stack.rows(
            "SELECT signal_id, coalesce(instance, '') FROM coordinator_decisions"
            " WHERE signal_id = ANY(%s)",
            (ids,),
        )
        rows = Counter(signal_id for signal_id, _ in decisions)
        deciders = Deciders()
        for signal_id, instance in decisions:
            deciders.add(signal_id, instance)
        dropped = {
            i.name: extra_decisions(i.name, stack.log_lines(i), deciders) for i in stack.instances
        }
        orders = [
            StubOrder(
                wall=float(o["wall"]),
                client_order_id=str(o.get("client_order_id") or ""),
                symbol=str(o.get("symbol") or ""),
                side=str(o.get("side") or ""),
                status=int(o.get("status") or 0),
                signal_id=str(o.get("signal_id") or ""),
                error=str(o.get("error") or ""),
            )
            for o in stack.stub_orders()
        ]
        exits = [
            (instance or "", cid, float(at))
            for instance, cid, at in stack.rows(
                "SELECT instance, client_order_id, extract(epoch FROM created_at)"
                " FROM coordinator_orders WHERE signal_id LIKE 'exit:%%'"
            )
        ]
        checks = [
            check_decided_once(published, rows),
            check_one_decider(published, deciders, "stream"),
            check_one_decider(published, deciders, "pubsub"),
            check_client_ids_once(orders),
            check_sold_once(orders, self.held),
            *self.checks,
            check_stop_coverage(self.uncovered, self.failovers, self.look_gap),
            check_failover(list(self.failovers.items()), FAILOVER_TARGET),
        ]
        events = [e for i in stack.instances for e in leadership_events(i.name, stack.log_lines(i))]
        checks.append(check_leadership_moves(events, len(self.failovers)))
        if self.paused is not None:
            name, resumed_at = self.paused
            since = datetime.fromtimestamp(resumed_at, UTC).isoformat(timespec="milliseconds")
            refused = fence_refusals(stack.log_lines(stack.by_name(name)), since)
            again = [
                datetime.fromisoformat(e.at).timestamp()
                for e in events
                if e.instance == name and e.why == "taken" and e.at >= since
            ]
            until = min(again, default=float("inf"))
            checks.append(check_paused_writes(name, resumed_at, exits, orders, refused, until))
        checks.append(check_throughput(self.throughput))
        self.checks = checks
        sold = sum(
            1 for o in orders if o.side == "SELL" and o.symbol in self.held and o.status == 201
        )
        by_channel = Counter(p.channel for p in published)
        assert self.feed is not None
        print()
        print(
            f"cluster drill: {self.args.instances} instances, {len(self.held)} positions "
            f"({len(self.probes)} probes), {self.feed.ticks} ticks, {len(published)} signals "
            f"(stream {by_channel['stream']}, pub/sub {by_channel['pubsub']}), "
            f"{len(orders)} order requests at the stub, {sold} positions sold"
        )
        print("decisions made and dropped as already stored, per instance: " + str(dropped))
        for label, taken in self.lease_taken.items():
            failover = self.failovers.get(label)
            print(
                f"failover {label}: lease taken after {_seconds(taken)}, "
                f"first stop evaluation after {_seconds(failover)}"
            )
        known = [f for f in self.failovers.values() if f is not None]
        if known:
            print(
                f"failover median {statistics.median(known):.2f} s over {len(known)} "
                f"(target <= {FAILOVER_TARGET:g} s)"
            )
        for count, decided, orders_per_s in self.throughput:
            print(
                f"throughput, {count} instance(s): {decided:.0f} signals/s, "
                f"{orders_per_s:.0f} orders/s"
            )
        print("-" * 100)
        for check in checks:
            print(check.line())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a run of about 2 minutes")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--positions", type=int, default=200)
    parser.add_argument("--probes", type=int, default=10, help="positions timing the failover")
    parser.add_argument("--leader-kills", type=int, default=3)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds the leader is stopped")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds between faults")
    parser.add_argument("--burst", type=int, default=2000, help="stream signals per throughput run")
    parser.add_argument(
        "--signal-rate", type=float, default=20.0, help="signals/s during the faults"
    )
    parser.add_argument("--tick-interval", type=float, default=0.5)
    parser.add_argument("--probe-interval", type=float, default=0.05)
    parser.add_argument("--crash-per-fault", type=int, default=5)
    parser.add_argument("--lease", type=float, default=1.5, help="LEADER_LEASE_DURATION")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    args = parser.parse_args()
    if args.quick:
        args.leader_kills, args.settle, args.burst = 1, 4.0, 500
    if args.instances < 2:
        parser.error("--instances must be at least 2")
    tmp = Path(tempfile.mkdtemp(prefix="cluster-drill-"))
    if args.keep:
        print(f"data and logs in {tmp}")
    drill = Drill(args, tmp)
    try:
        passed = drill.run()
    finally:
        drill.stack.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
