"""The arena cap, in a fresh process that then allocates from many threads at once:
glibc's own report (malloc_info) counts the arenas it made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.malloc_arenas import limit_malloc_arenas

PROBE = r"""
import ctypes, ctypes.util, sys, threading
from coordinator.malloc_arenas import limit_malloc_arenas

capped = limit_malloc_arenas(2) if sys.argv[1] == "cap" else False
start = threading.Barrier(16)

def churn():
    start.wait()
    for _ in range(20_000):
        [bytearray(200) for _ in range(8)]

threads = [threading.Thread(target=churn) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
print(capped)
"""


def arenas(tmp_path: Path, mode: str) -> tuple[str, int]:
    report = tmp_path / f"{mode}.xml"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(report)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return done.stdout.strip(), report.read_text().count("<heap nr=")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_the_cap_holds_the_arenas_at_two_under_sixteen_threads(tmp_path: Path) -> None:
    capped, heaps = arenas(tmp_path, "cap")
    assert capped == "True"
    assert heaps <= 2, heaps
    # Without it, the same threads make more: the cap is what keeps them to two.
    _, uncapped = arenas(tmp_path, "none")
    assert uncapped > 2, uncapped


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


TRIM_PROBE = r"""
import sys
from coordinator.malloc_arenas import release_free_memory

def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

# A large buffer freed raises glibc's mmap threshold: the next ones come from the heap,
# each followed by a small block that outlives it (malloc's, not Python's: over 512
# bytes), so that no free block reaches the heap's top, which free() trims itself.
first = bytes(4 << 20)
del first
buffers, keep = [], []
for _ in range(64):
    buffers.append(b"x" * (1 << 20))
    keep.append(bytes(1000))
del buffers
before = rss_kb()
done = release_free_memory() if sys.argv[1] == "trim" else False
print(done, before - rss_kb())
"""


def freed_kb(mode: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    released, freed = done.stdout.split()
    return released, int(freed)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_buffers_freed_in_the_heap_go_back_to_the_system_when_released() -> None:
    released, freed = freed_kb("trim")
    assert released == "True"
    assert freed > 32 << 10, f"{freed} kB handed back of 64 MB freed"
    # Freed alone, they stay: the release is what hands them back.
    _, kept = freed_kb("none")
    assert kept < 8 << 10, kept
