"""The durable intake: a Redis Stream read through a consumer group.

Entries stay pending until the store writer acknowledges them, which it does only once
their decision is stored. At start this consumer first re-reads its own pending
entries (delivered before a crash), then takes over entries left pending by a dead
consumer for longer than ``claim_idle``, then reads new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from coordinator.infra.redis_reader import RedisReader

__all__ = ["StreamReader", "entry_payload"]

logger = logging.getLogger(__name__)


def entry_payload(fields: dict[bytes, bytes]) -> bytes:
    """The signal JSON of a stream entry: the field ``data`` (or ``payload``/``signal``)."""
    for name in (b"data", b"payload", b"signal"):
        if name in fields:
            return fields[name]
    # Not our shape: the intake rejects it with the field names it saw.
    listed = ", ".join(sorted(k.decode("utf-8", "replace") for k in fields))
    return f'{{"_stream_fields": "{listed}"}}'.encode()


class StreamReader(RedisReader):
    what = "stream intake"

    def __init__(
        self,
        url: str,
        *,
        stream: str,
        group: str,
        consumer: str,
        claim_idle: float,
        on_entry: Callable[[str, bytes, bool], None],
        on_connection: Callable[[bool, str | None], None],
        actor: str | None = None,
        batch: int = 500,
    ) -> None:
        super().__init__(name="stream-reader", actor=actor, on_connection=on_connection)
        self._url = url
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._claim_idle_ms = int(claim_idle * 1000)
        self._on_entry = on_entry
        self._batch = batch

    def _session(self) -> None:
        client = redis.Redis.from_url(self._url, socket_connect_timeout=2, socket_timeout=5)
        try:
            self._ensure_group(client)
            self._up()
            self._read_own_pending(client)
            claimed_at = 0.0
            while not self._stopped.is_set():
                now = _monotonic()
                if now - claimed_at > max(1.0, self._claim_idle_ms / 3000):
                    self._claim_abandoned(client)
                    claimed_at = now
                # A RESP2 reply, [[stream, [(id, fields), ...]]]: the library's type
                # covers every protocol's shape.
                reply: Any = client.xreadgroup(
                    self._group,
                    self._consumer,
                    {self._stream: ">"},
                    count=self._batch,
                    # What a stop waits for at most; ten empty reads a second when idle.
                    block=100,
                )
                self._deliver(reply)
        finally:
            client.close()

    def _ensure_group(self, client: redis.Redis) -> None:
        try:
            client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
            logger.info("created consumer group %s on %s", self._group, self._stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read_own_pending(self, client: redis.Redis) -> None:
        last = "0"
        while not self._stopped.is_set():
            reply: Any = client.xreadgroup(
                self._group, self._consumer, {self._stream: last}, count=self._batch
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            self._deliver(reply, redelivered=True)
            last = entries[-1][0]

    def _claim_abandoned(self, client: redis.Redis) -> None:
        start = "0-0"
        while not self._stopped.is_set():
            reply = client.xautoclaim(
                self._stream,
                self._group,
                self._consumer,
                min_idle_time=self._claim_idle_ms,
                start_id=start,
                count=self._batch,
            )
            start, entries = reply[0], reply[1]
            if entries:
                logger.warning(
                    "took over %d entries left pending by another consumer", len(entries)
                )
                self._deliver([[self._stream, entries]], redelivered=True)
            if start in (b"0-0", "0-0") or not entries:
                return

    def _deliver(self, reply: list, *, redelivered: bool = False) -> None:
        """``redelivered``: entries delivered before (pending), maybe to another process."""
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields is None:  # deleted while pending
                    continue
                key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                self._on_entry(key, entry_payload(fields), redelivered)


def _monotonic() -> float:
    import time

    return time.monotonic()
