"""CPU of a process from /proc, in total and by thread name: what each stage costs.

The coordinator names its threads after their Python names (Validator-3, SignalIntake-1,
http, waitress-2, ...; coordinator/supervisor/thread_labels.py), so the CPU a run cost is
split by stage with nothing but /proc: threads of one kind (Validator-1..-4) are summed
under one name, and the CPU of threads that ended during the run is "(ended threads)".

    before = CpuSample.of(pid)
    ... the run ...
    print(CpuSample.of(pid).since(before).report(orders))
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
# Validator-3, validator-1#2 (the second incarnation of the first), ThreadPoolExecutor-0_1
_NUMBERED = re.compile(r"([-_#]\d+)+$")


def _times(stat: str) -> tuple[str, float]:
    """(name, utime + stime in seconds) from a /proc stat line; the name may hold spaces
    and parentheses, so it is what lies between the first '(' and the last ')'."""
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of stat(5), counted from the pid; 'fields' starts at field 3.
    return name, (int(fields[11]) + int(fields[12])) / _TICK


def stage(thread_name: str) -> str:
    """A thread's stage: its name without the number that tells threads of a kind apart."""
    return _NUMBERED.sub("", thread_name) or thread_name


@dataclass(frozen=True)
class CpuSample:
    total: float
    """CPU seconds of the whole process (ended threads included)."""
    threads: dict[int, tuple[str, float]]
    """Thread id -> (name, CPU seconds)."""

    @classmethod
    def of(cls, pid: int) -> CpuSample:
        _, total = _times(Path(f"/proc/{pid}/stat").read_text())
        threads: dict[int, tuple[str, float]] = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                threads[int(task.name)] = _times((task / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended while listed
        return cls(total, threads)

    def since(self, before: CpuSample) -> CpuUse:
        by_stage: dict[str, float] = {}
        for tid, (name, seconds) in self.threads.items():
            used = seconds - before.threads.get(tid, (name, 0.0))[1]
            if used > 0:
                by_stage[stage(name)] = by_stage.get(stage(name), 0.0) + used
        ended = (self.total - before.total) - sum(by_stage.values())
        gone = sorted(
            {stage(n) for tid, (n, _) in before.threads.items() if tid not in self.threads}
        )
        if ended > 0.005:
            by_stage["(ended threads)"] = ended
        return CpuUse(self.total - before.total, by_stage, gone)


@dataclass(frozen=True)
class CpuUse:
    seconds: float
    """CPU seconds the process used between two samples."""
    by_stage: dict[str, float]
    """Stage -> CPU seconds."""
    ended: list[str]
    """Stages of the threads that ended between the samples."""

    def report(self, orders: int, *, target_ms: float | None = 0.35, top: int = 12) -> str:
        if orders <= 0:
            return f"coordinator CPU {self.seconds:.2f} s, no order"
        per = self.seconds / orders * 1000
        line = f"coordinator CPU per order: {per:.3f} ms ({self.seconds:.2f} s for {orders} orders)"
        if target_ms is not None:
            line += f"   (target <= {target_ms:g} ms)"
        parts = sorted(self.by_stage.items(), key=lambda item: -item[1])
        split = ", ".join(
            f"{name} {seconds / orders * 1000:.3f}" for name, seconds in parts[:top] if seconds > 0
        )
        line += "\n  by thread, ms per order: " + split
        if self.ended:
            line += "\n  threads ended meanwhile: " + ", ".join(self.ended)
        return line
