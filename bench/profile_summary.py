"""Where the CPU went, from py-spy's collapsed stacks (``--profile run.txt``).

Each line of the file is one stack (``thread (tid): name;frame;frame;...``) and its
sample count. Prints, by thread, then by function: the share of the samples in which a
function was on the stack (inclusive, a function counted once per stack) and at its top
(self).

    python bench/profile_summary.py /tmp/run.txt [--top 25] [--thread validator]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_NUMBERED = re.compile(r"([-_#]\d+)+$")


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        stacks.append((_NUMBERED.sub("", thread) or thread, frames[1:], int(count)))
    return stacks


def function(frame: str) -> str:
    """``Ledger._reserve (coordinator/actors/ledger.py:194)`` -> ``Ledger._reserve
    (coordinator/actors/ledger.py)``: one entry per function, whatever the line."""
    return re.sub(r":\d+\)$", ")", frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", help="only the threads whose name starts with this")
    args = parser.parse_args()
    stacks = parse(args.profile)
    if args.thread:
        stacks = [s for s in stacks if s[0].startswith(args.thread)]
    total = sum(count for _, _, count in stacks) or 1
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for thread, frames, count in stacks:
        threads[thread] += count
        for name in {function(f) for f in frames}:
            inclusive[name] += count
        if frames:
            own[function(frames[-1])] += count
    print(f"{total} samples")
    print("by thread:", ", ".join(f"{t} {n / total:.0%}" for t, n in threads.most_common(12)))
    print(f"\nby function, inclusive (top {args.top}):")
    for name, n in inclusive.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")
    print(f"\nby function, self (top {args.top}):")
    for name, n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
