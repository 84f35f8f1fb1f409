"""The intake's first step in a cluster: each signal from outside goes to the owner of
its symbol's partition, through that partition's stream (``infra.signal_router``), and
is decided there, not here. A signal that cannot be parsed has no symbol: the instance
that claims its id first decides it, as invalid, itself."""

from __future__ import annotations

import logging

from coordinator.cluster.ownership import PartitionOwnership
from coordinator.config.sections import IntakeConfig
from coordinator.infra.signal_router import Origin, Routed, RouteError, SignalRouter
from coordinator.messages.pipeline import Admission, RawSignal
from coordinator.trading.signals import InvalidSignal, Signal, SignalSource
from coordinator.trading.validation import AdmissionStatus, Reason

__all__ = ["IntakeRouting"]

logger = logging.getLogger(__name__)


class IntakeRouting:
    def __init__(
        self, ownership: PartitionOwnership, intake: IntakeConfig, redis_url: str, instance: str
    ) -> None:
        self._ownership = ownership
        self._intake = intake
        self._router = SignalRouter(
            redis_url,
            instance=instance,
            claim_prefix=f"{ownership.stream_prefix}claimed:",
            claim_ttl=intake.dedup_window,
        )

    def close(self) -> None:
        self._router.close()

    def route(self, raw: RawSignal, parsed: Signal | InvalidSignal) -> Admission | None:
        """The admission of a signal routed to its owner (or not routed, and why); None
        for an invalid signal this instance claimed: it decides it here."""
        origin = None
        if raw.source == SignalSource.STREAM and raw.stream_id:
            origin = Origin(self._intake.stream, self._intake.stream_group, raw.stream_id)
        stream = None
        if isinstance(parsed, Signal):
            stream = self._ownership.stream(self._ownership.partition_of(parsed.symbol))
        try:
            routed = self._router.route(
                parsed.signal_id,
                raw.payload,
                source=str(raw.source),
                received_at=raw.received_at,
                stream=stream,
                origin=origin,
            )
        except RouteError as exc:
            logger.error("%s", exc)
            return Admission(
                signal_id=parsed.signal_id,
                status=AdmissionStatus.REJECTED,
                reason=Reason.ROUTING_UNAVAILABLE.value,
            )
        if routed is Routed.DUPLICATE:
            return Admission(
                signal_id=parsed.signal_id,
                status=AdmissionStatus.DUPLICATE,
                reason=Reason.DUPLICATE_SIGNAL.value,
            )
        if stream is None:
            return None
        return Admission(signal_id=parsed.signal_id, status=AdmissionStatus.ACCEPTED, reason=None)
