"""A local write-ahead journal for what PostgreSQL could not take in time.

Records are JSON lines, appended and fsync'd before the caller goes on, so a decision
or an order intent written here survives a crash of the process. When PostgreSQL
answers again the store writer replays the journal into it and empties the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coordinator.infra.records import RecordKind

__all__ = ["Journal"]

logger = logging.getLogger(__name__)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._count = 0
        self._intents: set[str] = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        # A crash mid-write can leave a last line without its newline: the next record
        # must not be glued to it.
        self._torn_tail = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        for record in self._read():
            self._count += 1
            if record.get("kind") == RecordKind.INTENT:
                self._intents.add(record["client_order_id"])

    def __len__(self) -> int:
        return self._count

    def has_intent(self, client_order_id: str) -> bool:
        with self._lock:
            return client_order_id in self._intents

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        if not records:
            return
        with self._lock:
            self._append(records)

    def _append(self, records: list[dict[str, Any]]) -> None:
        """Append and fsync; the caller holds the lock."""
        text = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records)
        if self._torn_tail:
            text = "\n" + text
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._torn_tail = False
        self._count += len(records)
        self._intents.update(
            r["client_order_id"] for r in records if r.get("kind") == RecordKind.INTENT
        )

    def claim_intent(self, record: dict[str, Any]) -> bool:
        """Append an intent unless one with its client order id is here; True if added.
        The look and the append are one step: two threads never both claim an id."""
        with self._lock:
            if record["client_order_id"] in self._intents:
                return False
            self._append([record])
            return True

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._read())

    def clear(self, count: int) -> None:
        """Drop the first ``count`` records (those replayed); keep any added since."""
        with self._lock:
            remaining = list(self._read())[count:]
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w") as handle:
                for record in remaining:
                    handle.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            self._torn_tail = False
            self._count = len(remaining)
            self._intents = {
                r["client_order_id"] for r in remaining if r.get("kind") == RecordKind.INTENT
            }

    def _read(self) -> Iterable[dict[str, Any]]:
        try:
            handle = self.path.open()
        except FileNotFoundError:
            return
        with handle:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    # A line cut short by a crash mid-write: everything before it is whole.
                    logger.error("journal %s line %d is damaged and skipped", self.path, number)


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)
