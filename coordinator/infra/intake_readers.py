"""The intake's Redis readers, owned by the process rather than by an actor incarnation.

They hand every message to SignalIntake through the directory: while the intake is being
replaced the messages wait there, and the subscription and the stream consumer stay
connected throughout, so an actor restart loses no pub/sub message.
"""

from __future__ import annotations

import logging
import time

from coordinator.actors.names import ActorName
from coordinator.cluster.ownership import PartitionOwnership
from coordinator.config import IntakeConfig
from coordinator.infra.partition_reader import PartitionReader
from coordinator.infra.partition_store import DecidedFilter
from coordinator.infra.redis_bus import Subscription
from coordinator.infra.redis_reader import RedisReader
from coordinator.infra.stream_reader import StreamReader
from coordinator.messages.base import CommandBatch
from coordinator.messages.pipeline import IntakeLink, IntakeLinkChanged, RawSignal
from coordinator.supervisor.directory import ChildUnavailable, Directory
from coordinator.trading.signals import SignalSource

__all__ = ["IntakeReaders"]

logger = logging.getLogger(__name__)

_MAX_BATCH = 64
"""Published signals handed over in one message at most (the intake takes each alone)."""

INTAKE = ActorName.SIGNAL_INTAKE


def partition_raw(
    partition: int, ref: str, payload: bytes, meta: dict[str, str], taken_over: bool
) -> RawSignal:
    """An entry of a partition stream as the intake takes it: the signal's own source and
    reception time, its latency counted from that reception (the instances share a host
    clock, or nearly)."""
    now, mono = time.time(), time.monotonic()
    try:
        source = SignalSource(meta.get("source", ""))
    except ValueError:
        source = SignalSource.STREAM
    try:
        received_at = float(meta["received_at"])
    except (KeyError, ValueError):
        received_at = now
    return RawSignal(
        payload=payload,
        source=source,
        received_at=received_at,
        received_mono=mono - min(max(now - received_at, 0.0), 60.0),
        stream_id=ref,
        redelivered=taken_over,
        partition=partition,
    )


class IntakeReaders:
    def __init__(
        self,
        intake: IntakeConfig,
        redis_url: str,
        directory: Directory,
        *,
        ownership: PartitionOwnership | None = None,
        database_dsn: str | None = None,
    ) -> None:
        self._directory = directory
        self._intake = intake
        self._redis_url = redis_url
        self._ownership = ownership
        self._database_dsn = database_dsn
        self._readers: list[RedisReader] = self._build()

    def _build(self) -> list[RedisReader]:
        intake = self._intake
        redis_url = self._redis_url
        readers: list[RedisReader] = [
            Subscription(
                redis_url,
                channels=(intake.channel,),
                on_batch=self._hand_over_published,
                max_batch=_MAX_BATCH,
                on_connection=lambda up, error: self._link(IntakeLink.PUBSUB, up, error),
                name="intake-pubsub",
                actor="intake-pubsub",
            )
        ]
        if intake.stream_enabled:
            readers.append(
                StreamReader(
                    redis_url,
                    stream=intake.stream,
                    group=intake.stream_group,
                    consumer=intake.stream_consumer,
                    claim_idle=intake.claim_idle,
                    on_entry=lambda entry_id, data, again: self._hand_over(
                        data, SignalSource.STREAM, entry_id, again
                    ),
                    on_connection=lambda up, error: self._link(IntakeLink.STREAM, up, error),
                    actor="intake-stream",
                )
            )
        if self._ownership is not None and self._database_dsn is not None:
            # A cluster: what this instance decides comes from its partitions' streams.
            readers.append(
                PartitionReader(
                    redis_url,
                    ownership=self._ownership,
                    group=intake.stream_group,
                    consumer=intake.stream_consumer,
                    claim_idle=intake.claim_idle,
                    decided=DecidedFilter(self._database_dsn, timeout=5.0),
                    on_entry=self._hand_over_partition,
                    on_connection=lambda up, error: self._link(IntakeLink.PARTITIONS, up, error),
                    actor="intake-partitions",
                )
            )
        return readers

    def start(self) -> IntakeReaders:
        for reader in self._readers:
            reader.start()
        return self

    def stop(self) -> None:
        for reader in self._readers:
            reader.request_stop()
        for reader in self._readers:
            reader.join()

    def start_again(self) -> IntakeReaders:
        """New readers after a stop (a stopped thread cannot run again)."""
        self._readers = self._build()
        return self.start()

    def _hand_over(
        self, data: bytes, source: SignalSource, stream_id: str | None, redelivered: bool
    ) -> None:
        try:
            self._directory.tell(
                INTAKE,
                RawSignal(
                    payload=data,
                    source=source,
                    received_at=time.time(),
                    received_mono=time.monotonic(),
                    stream_id=stream_id,
                    redelivered=redelivered,
                ),
            )
        except ChildUnavailable as exc:
            # Only when the intake has been down long enough to fill its mailbox; a
            # stream entry stays pending and comes again.
            logger.error("signal from %s dropped: %s", source, exc)

    def _hand_over_published(self, batch: list[tuple[str, bytes, float, float]]) -> None:
        """What arrived together in one message: one hand-off between threads for them
        all; the intake takes each as if it had come alone, stamped when it was read."""
        signals = tuple(
            RawSignal(
                payload=data,
                source=SignalSource.PUBSUB,
                received_at=wall,
                received_mono=mono,
                stream_id=None,
                redelivered=False,
            )
            for _channel, data, mono, wall in batch
        )
        try:
            self._directory.tell(
                INTAKE, signals[0] if len(signals) == 1 else CommandBatch(commands=signals)
            )
        except ChildUnavailable as exc:
            # Only when the intake has been down long enough to fill its mailbox.
            logger.error("%d signal(s) from %s dropped: %s", len(signals), SignalSource.PUBSUB, exc)

    def _hand_over_partition(
        self, partition: int, ref: str, payload: bytes, meta: dict[str, str], taken_over: bool
    ) -> None:
        try:
            self._directory.tell(INTAKE, partition_raw(partition, ref, payload, meta, taken_over))
        except ChildUnavailable as exc:
            # The entry stays pending and is taken over again.
            logger.error("signal of partition %d dropped: %s", partition, exc)

    def _link(self, link: IntakeLink, up: bool, error: str | None) -> None:
        self._directory.publish(IntakeLinkChanged(link=link, connected=up, error=error))
