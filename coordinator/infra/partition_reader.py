"""Reads the streams of the partitions this process holds, through one consumer group.

The set changes as the PartitionKeeper takes and gives up partitions: each pass reads
the streams of those held now. A partition newly held is first emptied of the entries
its stream holds pending (read by an earlier owner, dead or gone, never acknowledged):
its lease proves the earlier owner no longer decides them. Entries a paused earlier
owner read after it lost the partition are taken over later, once idle for
``claim_idle``. An entry taken over whose signal has a stored decision is acknowledged
without going further: it was decided before its acknowledgement was made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from coordinator.cluster.ownership import PartitionOwnership
from coordinator.infra.partition_store import DecidedFilter
from coordinator.infra.redis_reader import RedisReader
from coordinator.infra.store import StoreError
from coordinator.infra.stream_reader import entry_payload

__all__ = ["PartitionEntry", "PartitionReader", "entry_ref", "split_ref"]

logger = logging.getLogger(__name__)

_REF = "@"


def entry_ref(stream: str, entry_id: str) -> str:
    """How an entry of a partition stream is named where a stream entry id goes
    (``coordinator_signals.stream_id``, acknowledgements): ``<stream>@<id>``."""
    return f"{stream}{_REF}{entry_id}"


def split_ref(ref: str, default_stream: str) -> tuple[str, str]:
    """(stream, entry id) of a reference; a bare id is an entry of ``default_stream``.
    Entry ids never hold the separator, stream names may: split at the last."""
    stream, sep, entry_id = ref.rpartition(_REF)
    return (stream, entry_id) if sep else (default_stream, ref)


PartitionEntry = Callable[[int, str, bytes, dict[str, str], bool], None]
"""(partition, entry reference, payload, the routing's fields, taken over)."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class PartitionReader(RedisReader):
    what = "partition streams"

    def __init__(
        self,
        url: str,
        *,
        ownership: PartitionOwnership,
        group: str,
        consumer: str,
        claim_idle: float,
        decided: DecidedFilter,
        on_entry: PartitionEntry,
        on_connection: Callable[[bool, str | None], None],
        actor: str | None = None,
        batch: int = 500,
    ) -> None:
        super().__init__(name="partition-reader", actor=actor, on_connection=on_connection)
        self._url = url
        self._ownership = ownership
        self._streams = ownership.streams()
        self._group = group
        self._consumer = consumer
        self._claim_idle_ms = int(claim_idle * 1000)
        self._decided = decided
        self._on_entry = on_entry
        self._batch = batch

    def join(self, timeout: float = 3.0) -> None:
        super().join(timeout)
        self._decided.close()

    def _session(self) -> None:
        client = redis.Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=5)
        try:
            self._up()
            taken: set[int] = set()
            claimed_at = 0.0
            while not self._stopped.is_set():
                reading = self._ownership.reading()
                for partition in sorted(reading - taken):
                    self._take_pending(client, partition, min_idle_ms=0)
                    taken.add(partition)
                # Given up: taken again (with what it then holds pending) if it comes back.
                taken &= reading
                if not reading:
                    self._ownership.changed.wait(0.2)
                    self._ownership.changed.clear()
                    continue
                now = time.monotonic()
                if now - claimed_at > max(1.0, self._claim_idle_ms / 3000):
                    for partition in sorted(reading):
                        self._take_pending(client, partition, min_idle_ms=self._claim_idle_ms)
                    claimed_at = now
                # Short blocks: a partition taken meanwhile is read within one.
                reply: Any = client.xreadgroup(
                    self._group,
                    self._consumer,
                    {self._ownership.stream(k): ">" for k in sorted(reading)},
                    count=self._batch,
                    block=100,
                )
                self._deliver(client, reply, taken_over=False)
        finally:
            client.close()

    def _ensure_group(self, client: redis.Redis, stream: str) -> None:
        try:
            client.xgroup_create(stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _take_pending(self, client: redis.Redis, partition: int, *, min_idle_ms: int) -> None:
        stream = self._ownership.stream(partition)
        self._ensure_group(client, stream)
        start = "0-0"
        while not self._stopped.is_set():
            reply = client.xautoclaim(
                stream,
                self._group,
                self._consumer,
                min_idle_time=min_idle_ms,
                start_id=start,
                count=self._batch,
            )
            start, entries = reply[0], reply[1]
            if entries:
                logger.info(
                    "partition %d: took over %d pending entr%s",
                    partition,
                    len(entries),
                    "y" if len(entries) == 1 else "ies",
                )
                self._deliver(client, [[stream, entries]], taken_over=True)
            if start in (b"0-0", "0-0") or not entries:
                return

    def _deliver(self, client: redis.Redis, reply: Any, *, taken_over: bool) -> None:
        for raw_stream, entries in reply or []:
            stream = _text(raw_stream)
            partition = self._streams.get(stream)
            if partition is None:
                continue
            items = [
                (_text(entry_id), {_text(k): v for k, v in fields.items()})
                for entry_id, fields in entries
                if fields is not None  # deleted while pending
            ]
            done = self._decided_already(items) if taken_over else set()
            if done:
                client.xack(stream, self._group, *done)
            for entry_id, fields in items:
                if entry_id in done:
                    continue
                payload = entry_payload({k.encode(): v for k, v in fields.items()})
                meta = {k: _text(v) for k, v in fields.items() if k != "data"}
                self._on_entry(partition, entry_ref(stream, entry_id), payload, meta, taken_over)

    def _decided_already(self, items: list[tuple[str, dict[str, Any]]]) -> set[str]:
        """Entry ids whose signal has a stored decision. When PostgreSQL cannot say, none:
        the Validator meets the stored intent of one that became an order."""
        by_signal = {
            _text(fields["signal_id"]): entry_id
            for entry_id, fields in items
            if "signal_id" in fields
        }
        try:
            decided = self._decided.decided(list(by_signal))
        except StoreError as exc:
            logger.warning("taken-over entries not checked for a decision: %s", exc)
            return set()
        return {by_signal[signal_id] for signal_id in decided}
