"""The operating system's name of each thread set to its Python name.

Linux shows every thread of the process as ``coordinator`` (or ``python``) in ``top -H``,
``ps -L`` and /proc; with its Python name (``Validator-3``, ``http``, ``supervisor-liveness``)
an operator sees which actor burns a core, and the benchmarks split the CPU per order by
stage from /proc alone. A thread may rename itself only, or be renamed through
/proc/self/task/<tid>/comm, which is what this does for threads started by any code,
pykka's and waitress's included.
"""

from __future__ import annotations

import threading
from pathlib import Path

# The kernel keeps 15 bytes of a thread's name.
_COMM_LIMIT = 15


class ThreadLabels:
    """Names the threads not yet named; cheap to call often (one listing of the
    process's threads, a write per new thread)."""

    def __init__(self, task_dir: Path = Path("/proc/self/task")) -> None:
        self._task_dir = task_dir
        self._named: dict[int, str] = {}

    def label(self) -> int:
        """Name every live thread whose OS name is not yet its Python name; return how
        many were named."""
        live: dict[int, str] = {}
        for thread in threading.enumerate():
            native = thread.native_id
            if native is not None:
                live[native] = thread.name
        # Forget gone threads: the kernel reuses their ids.
        for native in [n for n in self._named if n not in live]:
            del self._named[native]
        named = 0
        for native, name in live.items():
            if self._named.get(native) == name:
                continue
            comm = name.encode("utf-8", "replace")[:_COMM_LIMIT]
            try:
                (self._task_dir / str(native) / "comm").write_bytes(comm)
            except OSError:
                # Not Linux, or the thread ended since the listing: nothing to name.
                continue
            self._named[native] = name
            named += 1
        return named
