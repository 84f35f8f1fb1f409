"""bench/pipeline.py's commands of how costs grow: ``rejected`` and ``rss``.

rejected  signals the pipeline refuses before any order request, published at once,
          decided and stored per second (target >= 10,000/s), and the coordinator's CPU
          per signal split by thread. ``--refusal no_position`` (the default): SELLs of
          symbols nothing is held of, the longest path without an order (intake, the
          Validator's checks, the Ledger's risk and portfolio checks, the decision
          store); ``not_in_universe``: BUYs of symbols outside the universe, refused by
          the Validator before the Ledger.
rss       a steady run at ``--rate`` signals/s for ``--minutes``: the coordinator's RSS
          sampled every 10 s, printed at 1, 5, 10, 30, 60 minutes with its slope; target
          flat and <= 200 MB. One signal in ten (``--order-share``) is of the BUY/SELL
          alternation that makes orders, the rest are refused (half ``no_position``,
          half ``not_in_universe``): an order for every signal would be 1.8 million
          orders an hour, over MAX_ORDERS_PER_MINUTE, and the Trader stub keeps each.
          ``--objects``: at each mark the coordinator counts its objects by type (gc)
          and lists its largest containers, through a SIGUSR2 handler that a
          sitecustomize module installs (bench only; nothing in the coordinator).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2

from bench.cpu import CpuUse
from bench.pipeline_stack import CHANNEL, Stack, order_body, rss_mb, signal_body

REFUSED_SELL = [f"R{index:03d}USDC" for index in range(50)]  # never bought
OUTSIDE = [f"X{index:03d}USDC" for index in range(50)]  # not in the universe
MARKS_MINUTES = (1, 5, 10, 30, 60)
SAMPLE_EVERY = 10.0


def refused(refusal: str, index: int) -> dict[str, Any]:
    """One signal refused before any order: a SELL of nothing held, or a BUY outside the
    universe."""
    sell = refusal == "no_position"
    symbols = REFUSED_SELL if sell else OUTSIDE
    return signal_body(
        symbols[index % len(symbols)],
        "SELL" if sell else "BUY",
        10.0 + index % 7,
        int(time.time() * 1000),
    )


def decisions(cur: Any) -> int:
    cur.execute("SELECT count(*) FROM coordinator_decisions")
    count: int = cur.fetchone()[0]
    cur.connection.rollback()  # each poll sees what was committed since the last
    return count


def per_signal(cpu: CpuUse, signals: int, top: int = 10) -> str:
    parts = sorted(cpu.by_stage.items(), key=lambda item: -item[1])
    split = ", ".join(
        f"{name} {seconds / signals * 1e6:.0f}" for name, seconds in parts[:top] if seconds > 0
    )
    return (
        f"coordinator CPU per signal: {cpu.seconds / signals * 1e6:.0f} us "
        f"({cpu.seconds:.2f} s for {signals} signals): at most "
        f"{signals / cpu.seconds:,.0f} signals per CPU second\n"
        f"  by thread, us per signal: {split}"
    )


def rejected(args: argparse.Namespace, tmp: Path) -> None:
    stack = Stack(
        tmp,
        {
            "MAX_PENDING_SIGNALS": str(min(100_000, args.signals)),
            "SUPERVISOR_LIVENESS_TIMEOUT": "600",  # a Ping waits behind the whole backlog
        },
        paper=args.paper,
    )
    try:
        with psycopg2.connect(stack.postgres.dsn) as conn, conn.cursor() as cur:
            warm = [json.dumps(refused(args.refusal, i)) for i in range(500)]
            _publish_all(stack, warm)
            _wait_count(cur, len(warm), 120)
            bodies = [json.dumps(refused(args.refusal, i)) for i in range(args.signals)]
            spy = stack.profile(args.profile)
            cpu_before = stack.cpu()
            started = time.perf_counter()
            published = _publish_all(stack, bodies)
            _wait_count(cur, len(warm) + len(bodies), 600)
            elapsed = time.perf_counter() - started
            cpu = stack.cpu().since(cpu_before)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            cur.execute(
                "SELECT outcome, coalesce(reason, ''), count(*) FROM coordinator_decisions"
                " GROUP BY 1, 2 ORDER BY 3 DESC"
            )
            outcomes = cur.fetchall()
        received = stack.orders()[0]
        print(f"Trader: {stack.trader_name}; refusal: {args.refusal}")
        print(f"published {len(bodies)} signals in {published:.2f} s")
        print(
            f"decided and stored {len(bodies)} in {elapsed:.2f} s: "
            f"{len(bodies) / elapsed:,.0f} signals/s   (target >= 10,000 signals/s)"
        )
        print(f"order requests at the Trader: {received} (0 expected)")
        print(per_signal(cpu, len(bodies)))
        print("decisions (with the 500 of the warm-up):")
        for outcome, reason, n in outcomes:
            print(f"  {outcome} {reason}: {n}")
    finally:
        stack.stop()


def _publish_all(stack: Stack, bodies: list[str]) -> float:
    pipe = stack.client.pipeline(transaction=False)
    started = time.perf_counter()
    for index, body in enumerate(bodies, start=1):
        pipe.publish(CHANNEL, body)
        if index % 200 == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started


def _wait_count(cur: Any, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while decisions(cur) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {decisions(cur)} of {count} decided in {timeout:g} s")
        time.sleep(0.05)


def steady_mix(order_share: float) -> Iterator[dict[str, Any]]:
    """Signals for the rss run: ``order_share`` of them the BUY/SELL alternation over the
    pipeline's symbols (each an order), the rest refused without one."""
    made = refusals = 0
    while True:
        if made < (made + refusals + 1) * order_share:
            yield order_body(made)
            made += 1
        else:
            refusals += 1
            yield refused("no_position" if refusals % 2 else "not_in_universe", refusals)


SITECUSTOMIZE = r"""
import collections, gc, json, os, signal, sys, threading

KINDS = (dict, list, set, frozenset, tuple, collections.deque)

def _dump(_signum, _frame):
    # Off the signal handler's frame: the handler only starts the count.
    threading.Thread(target=_count, name="bench-objects", daemon=True).start()

def _count():
    try:
        _count_objects()
    except Exception as exc:
        sys.stderr.write("bench-objects: %r\n" % (exc,))


def _count_objects():
    # A dict of atomic values (str -> float: a registry of ids) is not tracked by gc, nor
    # is an object's __dict__ until asked for: large containers are also looked for among
    # the values of dicts and attributes, named by their key.
    counts, found = {}, {}

    def consider(value, where):
        if not isinstance(value, KINDS):
            return
        known = found.get(id(value))
        if known is not None:
            if where and not known[2]:
                found[id(value)] = (known[0], known[1], where, known[3])
            return
        try:
            size = len(value)
        except Exception:
            return
        if size >= 1000:
            entries = value.items() if isinstance(value, dict) else value
            sample = next(iter(entries), None)
            found[id(value)] = (size, type(value).__qualname__, where, repr(sample)[:100])

    for obj in gc.get_objects():
        kind = type(obj)
        name = "%s.%s" % (getattr(kind, "__module__", "?"), getattr(kind, "__qualname__", "?"))
        counts[name] = counts.get(name, 0) + 1
        consider(obj, "")
        if type(obj) is dict:
            for key, value in list(obj.items()):
                consider(value, str(key)[:40])
        elif not isinstance(obj, type):
            try:
                attributes = object.__getattribute__(obj, "__dict__")
            except Exception:
                continue
            for key, value in list(attributes.items()):
                consider(value, type(obj).__qualname__ + "." + str(key)[:40])
    largest = sorted(found.values(), reverse=True)
    # What gc does not track (strings, bytes, numbers) shows in pymalloc's blocks; what
    # is not Python's at all (libpq, OpenSSL, a heap that no longer shrinks), in malloc's.
    heap = {"python_blocks": sys.getallocatedblocks()}
    try:
        import ctypes

        class _Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Info
        info = libc.mallinfo2()
        heap.update(malloc_in_use=info.uordblks + info.hblkhd, malloc_free=info.fordblks)
    except (OSError, AttributeError):
        pass
    path = os.environ["BENCH_OBJECTS_DIR"] + "/objects-%d.json" % int(__import__("time").time())
    with open(path + ".tmp", "w") as handle:
        json.dump({"counts": counts, "largest": largest[:15], "heap": heap}, handle)
    os.replace(path + ".tmp", path)

signal.signal(signal.SIGUSR2, _dump)
"""


def rss(args: argparse.Namespace, tmp: Path) -> None:
    extra: dict[str, str] = {}
    objects_dir = tmp / "objects"
    if args.objects:
        probe = tmp / "probe"
        probe.mkdir()
        objects_dir.mkdir()
        (probe / "sitecustomize.py").write_text(SITECUSTOMIZE)
        extra = {"PYTHONPATH": str(probe), "BENCH_OBJECTS_DIR": str(objects_dir)}
    # On a loaded machine the StoreWriter falls behind for a while, and a Ping that waits
    # behind its backlog for 15 s had it replaced as hung, then SignalIntake, until the
    # supervisor gave up and the process exited (5 - 6 min into a run at load 15 - 20):
    # that is measured elsewhere; this run measures the memory.
    extra["SUPERVISOR_LIVENESS_TIMEOUT"] = str(args.liveness)
    stack = Stack(tmp, extra, paper=args.paper)
    pid = stack.coordinator.pid
    try:
        with psycopg2.connect(stack.postgres.dsn) as conn, conn.cursor() as cur:
            samples = _steady(stack, args, cur, objects_dir if args.objects else None)
            cur.execute(
                "SELECT outcome, coalesce(reason, ''), count(*) FROM coordinator_decisions"
                " GROUP BY 1, 2 ORDER BY 3 DESC"
            )
            outcomes = cur.fetchall()
        print(f"Trader: {stack.trader_name}; {args.rate:g} signals/s for {args.minutes:g} min")
        _slopes(samples)
        print("decisions:", ", ".join(f"{o} {r or '-'} {n}" for o, r, n in outcomes))
        print(f"coordinator alive at the end: {stack.coordinator.poll() is None}")
        if args.objects:
            _object_growth(objects_dir, args.minutes)
    finally:
        if stack.coordinator.poll() is None:
            print(f"RSS at the stop: {rss_mb(pid):.1f} MB")
        stack.stop()
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for name in ("coordinator.log", "trader.log"):
                if (tmp / name).exists():
                    shutil.copy(tmp / name, args.logs / name)
            if args.objects:
                shutil.copytree(objects_dir, args.logs / "objects", dirs_exist_ok=True)


def _steady(
    stack: Stack, args: argparse.Namespace, cur: Any, objects_dir: Path | None
) -> list[tuple[float, float]]:
    """Publish at the rate for the duration; (minutes, RSS MB) every 10 s."""
    pid = stack.coordinator.pid
    bodies = steady_mix(args.order_share)
    pipe = stack.client.pipeline(transaction=False)
    batch = max(1, int(args.rate / 100))  # every 10 ms
    started = time.perf_counter()
    duration = args.minutes * 60
    samples: list[tuple[float, float]] = [(0.0, rss_mb(pid))]
    marks = [m for m in MARKS_MINUTES if m < args.minutes]
    sent = 0

    def mark(minutes: float) -> None:
        cur.execute("SELECT pg_database_size(current_database())")
        size = cur.fetchone()[0] / 1e6
        print(
            f"{minutes:>4g} min: RSS {samples[-1][1]:.1f} MB, {sent} published, "
            f"{decisions(cur)} decided, database {size:,.0f} MB",
            flush=True,
        )
        if objects_dir is not None:
            stack.coordinator.send_signal(signal.SIGUSR2)

    print(f"RSS at the start: {samples[0][1]:.1f} MB", flush=True)
    while (elapsed := time.perf_counter() - started) < duration:
        for _ in range(batch):
            body = next(bodies)
            body["timestamp"] = int(time.time() * 1000)
            pipe.publish(CHANNEL, json.dumps(body))
        pipe.execute()
        sent += batch
        if elapsed >= len(samples) * SAMPLE_EVERY:
            if stack.coordinator.poll() is not None:
                raise SystemExit(f"the coordinator exited at {elapsed / 60:.1f} min")
            samples.append((elapsed / 60, rss_mb(pid)))
            if marks and elapsed >= marks[0] * 60:
                mark(marks.pop(0))
        due = started + sent / args.rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    samples.append(((time.perf_counter() - started) / 60, rss_mb(pid)))
    mark(args.minutes)
    return samples


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares MB per hour."""
    if len(points) < 2:
        return 0.0
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return 0.0 if var == 0 else 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def _slopes(samples: list[tuple[float, float]]) -> None:
    end = samples[-1][0]
    peak = max(y for _, y in samples)
    print(
        f"RSS: {samples[0][1]:.1f} MB at the start, {samples[-1][1]:.1f} MB at "
        f"{end:.1f} min, peak {peak:.1f} MB   (target flat, <= 200 MB)"
    )
    warm = [p for p in samples if p[0] >= min(5.0, end / 2)]
    second_half = [p for p in samples if p[0] >= end / 2]
    print(
        f"slope: {_slope(warm):+.1f} MB/h after the first {min(5.0, end / 2):.1f} min, "
        f"{_slope(second_half):+.1f} MB/h over the second half"
    )


def _object_growth(objects_dir: Path, minutes: float) -> None:
    expected = len([m for m in MARKS_MINUTES if m < minutes]) + 1
    deadline = time.monotonic() + 60
    dumps = sorted(objects_dir.glob("objects-*.json"))
    while len(dumps) < expected and time.monotonic() < deadline:
        time.sleep(1)
        dumps = sorted(objects_dir.glob("objects-*.json"))
    if len(dumps) < 2:
        print("objects: fewer than two counts were written")
        return
    first, last = (json.loads(path.read_text()) for path in (dumps[0], dumps[-1]))
    grown = sorted(
        ((n - first["counts"].get(name, 0), name, n) for name, n in last["counts"].items()),
        reverse=True,
    )
    for name, before in first.get("heap", {}).items():
        after = last["heap"].get(name, before)
        scale, unit = (1, "") if name == "python_blocks" else (1e-6, " MB")
        print(f"heap {name}: {before * scale:,.1f}{unit} -> {after * scale:,.1f}{unit}")
    print("objects grown from the first count to the last (gc-tracked, by type):")
    for delta, name, n in grown[:12]:
        print(f"  {delta:+,} {name} (now {n:,})")
    print("largest containers at the last count (length, type, key or attribute, an entry):")
    for size, kind, where, sample in last["largest"][:10]:
        print(f"  {size:,} {kind} {where or '-'}: {sample}")


def add_commands(commands: Any) -> dict[str, Callable[[argparse.Namespace, Path], None]]:
    """Add ``rejected`` and ``rss`` to bench/pipeline.py's sub-commands."""
    one = commands.add_parser("rejected")
    one.add_argument("--signals", type=int, default=30_000)
    one.add_argument("--refusal", choices=("no_position", "not_in_universe"), default="no_position")
    one.add_argument("--profile", type=Path, help="py-spy's record of the run (.txt: collapsed)")
    two = commands.add_parser("rss")
    two.add_argument("--minutes", type=float, default=60.0)
    two.add_argument("--rate", type=float, default=500.0)
    two.add_argument("--order-share", type=float, default=0.1)
    two.add_argument("--objects", action="store_true", help="count objects at each mark")
    two.add_argument("--logs", type=Path, help="copy the coordinator's log (and counts) here")
    two.add_argument(
        "--liveness", type=float, default=120.0, help="SUPERVISOR_LIVENESS_TIMEOUT of the run"
    )
    return {"rejected": rejected, "rss": rss}
