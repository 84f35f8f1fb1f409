"""The cluster drill's checks, computed from what it recorded: no process, no I/O.

Each check is a ``Check``: a name, whether it held, and the numbers behind the verdict.
``bench/cluster.py`` gathers the records (the stub's order log, the store's rows, the
instances' JSON logs, its own timings) and prints one line per check.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Check",
    "Deciders",
    "LeadershipEvent",
    "Published",
    "StubOrder",
    "check_client_ids_once",
    "check_decided_once",
    "check_failover",
    "check_leadership_moves",
    "check_one_decider",
    "check_paused_writes",
    "check_peaks",
    "check_sold_once",
    "check_stop_coverage",
    "check_throughput",
    "extra_decisions",
    "fence_refusals",
    "first_evaluation",
    "leadership_events",
]

FAILOVER_TARGET = 2.0
"""Seconds from the leader's loss to the new leader's first stop evaluation (median)."""

# The lines an instance writes when it decided a signal whose decision another one (or
# it, earlier) already stored: its decision is dropped, but it was made.
_DROPPED = (
    re.compile(r"^decision for (?P<id>\S+) was already stored; this one dropped$"),
    re.compile(r"^(?P<id>\S+) was decided elsewhere meanwhile; this decision dropped$"),
)


_TAKEN = re.compile(r"^leader: lease \S+ taken at generation (?P<generation>\d+)$")
_DORMANT = re.compile(
    r"^trailing stops dormant \(no longer leader at generation (?P<generation>\d+)\): (?P<why>.*)$"
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    numbers: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<44} {self.numbers}"


@dataclass(frozen=True, slots=True)
class Published:
    signal_id: str
    channel: str
    """``stream`` or ``pubsub``."""


@dataclass(frozen=True, slots=True)
class StubOrder:
    """One order request as the stub recorded it."""

    wall: float
    client_order_id: str
    symbol: str
    side: str
    status: int
    signal_id: str = ""
    error: str = ""


@dataclass(slots=True)
class Deciders:
    """Per signal, the instances that decided it (one entry per decision made)."""

    by_signal: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, signal_id: str, instance: str, times: int = 1) -> None:
        self.by_signal[signal_id][instance] += times


def extra_decisions(instance: str, lines: Iterable[str], into: Deciders) -> int:
    """Count, from one instance's JSON log lines, the decisions it made and dropped
    because the signal was already decided; the number of such lines. Lines that are
    not JSON (a traceback's continuation) are skipped."""
    found = 0
    for line in lines:
        if "dropped" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("msg") if isinstance(entry, dict) else None
        if not isinstance(message, str):
            continue
        for pattern in _DROPPED:
            match = pattern.match(message)
            if match:
                into.add(match["id"], instance)
                found += 1
                break
    return found


def _entries(lines: Iterable[str], word: str) -> Iterable[tuple[str, str]]:
    """(ts, msg) of the JSON log lines holding ``word``."""
    for line in lines:
        if word not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("msg"), str):
            yield str(entry.get("ts", "")), entry["msg"]


@dataclass(frozen=True, slots=True)
class LeadershipEvent:
    at: str
    """The log line's ``ts`` (ISO-8601, UTC)."""
    instance: str
    generation: int
    why: str
    """``taken``, or why its trailing stops went dormant."""


def leadership_events(instance: str, lines: Iterable[str]) -> list[LeadershipEvent]:
    """The terms ``instance`` took and the ones its trailing stops left, from its log."""
    events = []
    for at, message in _entries(lines, "generation"):
        taken = _TAKEN.match(message)
        if taken:
            events.append(LeadershipEvent(at, instance, int(taken["generation"]), "taken"))
            continue
        dormant = _DORMANT.match(message)
        if dormant:
            events.append(
                LeadershipEvent(at, instance, int(dormant["generation"]), dormant["why"][:80])
            )
    return events


def fence_refusals(lines: Iterable[str], since: str) -> int:
    """Writes of the stops the fence refused, logged at ``since`` (ISO ts) or later."""
    return sum(
        1
        for at, message in _entries(lines, "fence refused")
        if at >= since and "dormant" in message
    )


def check_leadership_moves(events: Sequence[LeadershipEvent], leader_faults: int) -> Check:
    """The lease changed hands once per leader fault, never by itself: every new term
    after the first is a time without a leader (no stop evaluated)."""
    terms = sorted({e.generation for e in events if e.why == "taken"})
    handovers = len(terms) - 1 if terms else 0
    lost = [
        f"{e.at[11:23]} {e.instance} gen {e.generation}: {e.why}"
        for e in sorted(events, key=lambda e: e.at)
        if e.why != "taken" and "released" not in e.why
    ]
    return Check(
        "the lease moved only on a leader fault",
        bool(terms) and handovers == leader_faults,
        f"{len(terms)} terms, {handovers} handovers for {leader_faults} leader faults; "
        f"terms lost: {'; '.join(lost) or 'none'}",
    )


def check_decided_once(published: Sequence[Published], rows: Mapping[str, int]) -> Check:
    """Every published signal has exactly one stored decision (``rows``: count of
    ``coordinator_decisions`` rows per signal id)."""
    missing = [p.signal_id for p in published if rows.get(p.signal_id, 0) == 0]
    several = [p.signal_id for p in published if rows.get(p.signal_id, 0) > 1]
    return Check(
        "every signal decided once (stored)",
        not missing and not several,
        f"{len(published)} published, {len(published) - len(missing)} decided, "
        f"{len(missing)} missing{_some(missing)}, {len(several)} with several rows",
    )


def check_one_decider(published: Sequence[Published], deciders: Deciders, channel: str) -> Check:
    """Every signal of ``channel`` was decided by one instance, once: the stored decision
    plus every decision an instance made and dropped."""
    ids = [p.signal_id for p in published if p.channel == channel]
    counts = Counter(sum(deciders.by_signal.get(i, Counter()).values()) for i in ids)
    instances = Counter(len(deciders.by_signal.get(i, Counter())) for i in ids)
    over = [i for i in ids if sum(deciders.by_signal.get(i, Counter()).values()) > 1]
    spread = ", ".join(f"{n} decision(s): {c}" for n, c in sorted(counts.items()))
    by_instances = ", ".join(f"{n} instance(s): {c}" for n, c in sorted(instances.items()))
    return Check(
        f"{channel} signals decided by one instance",
        not over,
        f"{len(ids)} signals; {spread}; {by_instances}{_some(over)}",
    )


def check_client_ids_once(orders: Sequence[StubOrder]) -> Check:
    counts = Counter(o.client_order_id for o in orders if o.client_order_id)
    twice = sorted(k for k, n in counts.items() if n > 1)
    anonymous = sum(1 for o in orders if not o.client_order_id)
    return Check(
        "no client order id received twice",
        not twice and not anonymous,
        f"{len(orders)} requests, {len(counts)} client ids, {len(twice)} received more "
        f"than once{_some(twice)}, {anonymous} without one",
    )


def check_sold_once(orders: Sequence[StubOrder], held: Iterable[str]) -> Check:
    """Every seeded position sold once (the drill crashes them all under their stops):
    one filled SELL per symbol, and no SELL refused for want of the holding (an attempt
    to sell it again)."""
    symbols = set(held)
    sells = [o for o in orders if o.side == "SELL" and o.symbol in symbols]
    filled = Counter(o.symbol for o in sells if 200 <= o.status < 300)
    twice = sorted(s for s, n in filled.items() if n > 1)
    refused = sorted({o.symbol for o in sells if o.status == 422})
    return Check(
        "every position sold, none twice",
        len(filled) == len(symbols) and not twice and not refused,
        f"{len(filled)} of {len(symbols)} held positions sold, {len(twice)} sold twice"
        f"{_some(twice)}, {len(refused)} with a SELL refused beyond the holding{_some(refused)}",
    )


def first_evaluation(
    lost_at: float, before: Mapping[str, float], after: Iterable[tuple[str, float, float]]
) -> float | None:
    """When the new leader first evaluated a stop: the earliest ``updated_at`` of a
    ``coordinator_stops`` row moved after ``lost_at`` to a peak above the one stored at
    that moment (``before``: peak per position key; ``after``: key, peak, updated_at).
    None when no row moved."""
    moved = [
        updated
        for key, peak, updated in after
        if updated > lost_at and peak > before.get(key, float("-inf"))
    ]
    return min(moved) if moved else None


def check_failover(samples: Sequence[tuple[str, float | None]], target: float) -> Check:
    """Each leader fault's failover time (None: no new leader evaluated a stop) and the
    median against ``target``."""
    known = [s for _, s in samples if s is not None]
    never = [label for label, s in samples if s is None]
    median = statistics.median(known) if known else None
    each = ", ".join(f"{label} {'-' if s is None else f'{s:.2f} s'}" for label, s in samples)
    return Check(
        "failover (leader lost -> first stop evaluation)",
        bool(samples) and not never and median is not None and median <= target,
        f"{each}; median {'-' if median is None else f'{median:.2f} s'} (target <= {target:g} s)",
    )


def check_stop_coverage(
    uncovered: Mapping[str, Mapping[str, float | None]],
    failovers: Mapping[str, float | None],
    resolution: float,
) -> Check:
    """After each leader fault, every watched position was under a stop of the new leader
    within that fault's failover time (``uncovered``: per fault, per symbol, seconds from
    the fault to the first look that showed it watched, None: never; ``resolution``: how
    often it was looked at)."""
    worst: list[str] = []
    passed = bool(uncovered)
    for label, per_symbol in uncovered.items():
        never = sorted(s for s, t in per_symbol.items() if t is None)
        times = [t for t in per_symbol.values() if t is not None]
        longest = max(times) if times else None
        bound = failovers.get(label)
        late = bound is None or longest is None or longest > bound + resolution
        passed = passed and not never and not late
        worst.append(
            f"{label}: {len(times)} of {len(per_symbol)} within "
            f"{'-' if longest is None else f'{longest:.2f} s'} "
            f"(failover {'-' if bound is None else f'{bound:.2f} s'}){_some(never)}"
        )
    return Check(
        "no position without a stop past the failover",
        passed,
        "; ".join(worst) + f"; looked at least every {resolution:.2f} s",
    )


def check_peaks(
    label: str, expected: Mapping[str, float], stored: Mapping[str, float], tolerance: float = 1e-9
) -> Check:
    """The peaks the new leader holds equal the highest tick seen before the fault."""
    missing = sorted(s for s in expected if s not in stored)
    lower = sorted(
        s for s, p in expected.items() if s in stored and stored[s] < p * (1 - tolerance)
    )
    higher = sorted(
        s for s, p in expected.items() if s in stored and stored[s] > p * (1 + tolerance)
    )
    return Check(
        f"peaks intact after {label}",
        bool(expected) and not missing and not lower and not higher,
        f"{len(expected)} positions: {len(expected) - len(missing) - len(lower) - len(higher)} "
        f"equal to the highest tick before the fault, {len(lower)} lower{_some(lower)}, "
        f"{len(higher)} higher{_some(higher)}, {len(missing)} not stored{_some(missing)}",
    )


def check_paused_writes(
    instance: str,
    resumed_at: float,
    stored: Sequence[tuple[str, str, float]],
    arrivals: Sequence[StubOrder],
    refused: int = 0,
    until: float = float("inf"),
) -> Check:
    """The paused ex-leader's leader-only writes after it resumed and before it took a
    new term (``until``: it may lead again, legitimately): none accepted. ``stored``:
    (instance, client order id, at) of the stored orders of stop exits; ``arrivals``:
    the stub's order requests."""
    its_exits = {cid for who, cid, at in stored if who == instance and resumed_at <= at < until}
    reached = [o for o in arrivals if o.client_order_id in its_exits and o.wall >= resumed_at]
    return Check(
        f"paused ex-leader {instance}: writes after SIGCONT",
        not its_exits and not reached,
        f"{len(its_exits)} exit orders stored, {len(reached)} reaching the stub (target 0); "
        f"{refused} write(s) of its stops refused by the fence; "
        + ("it never led again" if until == float("inf") else f"until its next term {until:.3f}"),
    )


def check_throughput(rows: Sequence[tuple[int, float, float]]) -> Check:
    """(instances, signals decided/s, orders/s): 3 instances decide at least as fast as 1."""
    rates = {n: decided for n, decided, _ in rows}
    text = ", ".join(f"{n}: {d:.0f} signals/s, {o:.0f} orders/s" for n, d, o in rows)
    one, most = rates.get(1), rates.get(max(rates)) if rates else None
    return Check(
        "throughput with 3 instances >= with 1",
        one is not None and most is not None and max(rates) > 1 and most >= one,
        text or "not measured",
    )


def _some(items: Sequence[str], shown: int = 3) -> str:
    if not items:
        return ""
    more = f", +{len(items) - shown}" if len(items) > shown else ""
    return f" (e.g. {', '.join(list(items)[:shown])}{more})"
