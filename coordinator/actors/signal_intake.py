"""SignalIntake: every way a signal comes in, steps 1-3, and the in-flight table.

Redis pub/sub and the Redis Stream are read by ``IntakeReaders`` threads that only
receive and hand over through the directory, so a restart of this actor loses nothing
(its mail waits in the directory); ``POST /signals`` asks directly; at process start,
signals left undecided by an earlier run and unprocessed ``trading_signals`` rows are
taken in again. Each signal is parsed (1), checked for staleness and duplicates (2) and
back-pressure (3), stored as received, and sent to the Validator of its symbol. It stays
in the in-flight table until its decision is stored; if that Validator is replaced
meanwhile, it is sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import pykka

from coordinator.actors.dedup_handover import duplicate_window, rebuild_window
from coordinator.actors.intake_catch_up import (
    CATCH_UP_RETRY,
    CatchUpCause,
    CatchUpDue,
    CatchUpFailed,
    CatchUpPlan,
    CatchUpRows,
    UnliftableRow,
    catch_up_messages,
    read_pending_rows_for,
)
from coordinator.actors.intake_routing import IntakeRouting
from coordinator.actors.leadership import lease_now
from coordinator.actors.names import ActorName
from coordinator.actors.outbox import Outbox
from coordinator.cluster.fencing import LeaseToken
from coordinator.config.parts import IntakeSettings
from coordinator.infra.partition_reader import split_ref
from coordinator.infra.store import StoreError, first_line
from coordinator.malloc_arenas import release_free_memory
from coordinator.messages.leadership import LeaderElected, LeadershipLost
from coordinator.messages.partitions import GetBusyPartitions
from coordinator.messages.pipeline import (
    AckStreamEntry,
    Admission,
    Decision,
    GetIntakeSnapshot,
    GetUndecided,
    IntakeLink,
    IntakeLinkChanged,
    IntakeSnapshot,
    IntakeTick,
    RawSignal,
    RecordDecision,
    RecordSignal,
    ReleaseSignal,
    SignalDecided,
    SubmitSignal,
    UndecidedSignals,
)
from coordinator.messages.supervision import ChildRestarted
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.evolve import evolve
from coordinator.trading.routing import validator_for
from coordinator.trading.signal_rows import LiftedRow
from coordinator.trading.signals import (
    InvalidSignal,
    Signal,
    SignalSource,
    parse_signal,
)
from coordinator.trading.validation import (
    AdmissionStatus,
    CheckResult,
    Outcome,
    Reason,
    check_freshness,
)

__all__ = ["SignalIntake"]

logger = logging.getLogger(__name__)


@dataclass
class _InFlight:
    message: SubmitSignal
    validator: str
    stream_id: str | None
    partition: int | None = None


class SignalIntake(ChildActor):
    subscriptions = (
        SignalDecided,
        ChildRestarted,
        IntakeLinkChanged,
        LeaderElected,
        LeadershipLost,
    )
    settings: IntakeSettings

    def setup(self) -> None:
        services: Services = self.context.services
        coordination, intake = self.settings.coordination, self.settings.intake
        self._services = services
        self._clock = self.context.clock
        self._timeout = coordination.signal_timeout
        self._max_pending = coordination.max_pending_signals
        self._validators = coordination.validation_threads
        self._window = intake.dedup_window
        self._max_bytes = intake.max_signal_bytes
        self._recent = duplicate_window(self._window)
        self._in_flight: dict[str, _InFlight] = {}
        self._outbox = Outbox(self.context.directory)
        self._counts = dict.fromkeys(
            ("received", "admitted", "rejected", "duplicates", "resent", "routed"), 0
        )
        self._links: dict[IntakeLink, bool] = {}
        self._ownership = services.ownership
        self._routing: IntakeRouting | None = None
        if self._ownership is not None:
            self._routing = IntakeRouting(
                self._ownership,
                intake,
                services.endpoints.redis_url,
                services.config.instance.name,
            )
            self.on_cleanup(self._routing.close, what="signal router")
        self._recover()
        self._outbox.flush()  # what the recovery sent again: setup is no turn
        # A replaced intake of a leader leads at once: its election was told before.
        led = None if self.context.incarnation == 1 else lease_now(self.context.directory)
        self._catch_up = CatchUpPlan(token=led)
        self.worker_pool("catch-up")
        if led is not None:
            # Read once installed: a signal dropped until then has its row written.
            self.actor_ref.tell(CatchUpDue(cause=CatchUpCause.RESTARTED))
        # The hour of ids it was handed, a megabyte a generation, is garbage now.
        release_free_memory()
        self.ticker(5.0, IntakeTick)

    def _recover(self) -> None:
        """Rebuild the in-flight table and the dedup window from the store writer."""
        try:
            undecided: UndecidedSignals = self.context.directory.ask(
                ActorName.STORE_WRITER, GetUndecided(), timeout=10.0
            )
        except (ChildUnavailable, pykka.Timeout) as exc:
            raise RuntimeError(f"cannot recover the in-flight signals: {exc}") from exc
        now = self._clock.time()
        first_start = self.context.incarnation == 1
        # In a cluster the undecided signals of a new process wait in their partitions'
        # streams, for whichever instance holds the partition now; taken for seen here,
        # they would be acknowledged unseen when they come back.
        routed = self._routing is not None and first_start
        # Read after the StoreWriter's answer: what it flushes meanwhile is in the store.
        rebuild_window(
            self._recent, self._services, undecided.unwritten, now=now, horizon=self._window
        )
        if routed:
            for record in undecided.signals:
                self._recent.discard(record.signal_id)
        for record in undecided.signals:
            if record.signal is None or routed:
                continue
            message = SubmitSignal(
                signal=record.signal,
                source=record.source,
                received_at=record.received_at,
                received_mono=record.received_mono,
                redelivered=True,
            )
            self._recent.add(record.signal_id, now)
            if first_start:
                # A new process: nothing holds these any more. Check them again (the
                # stale ones will be rejected as such).
                self._admit_parsed(message, record.stream_id)
            else:
                self._in_flight[record.signal_id] = _InFlight(
                    message,
                    validator_for(record.signal.symbol, self._validators),
                    record.stream_id,
                    self._partition_of_ref(record.stream_id),
                )
        if undecided.signals and not routed:
            logger.warning(
                "%s %d undecided signal(s)",
                "taking in again" if first_start else "tracking",
                len(undecided.signals),
            )

    def _start_catch_up(self, cause: CatchUpCause | None) -> None:
        """Read the unprocessed ``trading_signals`` rows off the actor's thread."""
        if cause is None:
            return
        since = self._clock.time() - self._timeout
        dsn = self._services.endpoints.database_dsn
        directory = self.context.directory
        self.run_then_tell(
            lambda: read_pending_rows_for(directory, dsn, since),
            lambda rows: CatchUpRows(rows=rows, cause=cause),
            pool="catch-up",
            on_error=lambda exc: CatchUpFailed(error=first_line(exc), cause=cause),
            errors=(StoreError,),
        )

    def _take_in_rows(self, rows: tuple[dict[str, Any], ...], cause: CatchUpCause) -> None:
        """Rows of ``trading_signals`` with ``processed = false``, younger than signal_timeout."""
        if not self._catch_up.leading:
            # Read just before the lead was lost: the new leader reads them itself.
            return
        messages, skipped = catch_up_messages(
            rows, now=self._clock.time(), mono=self._clock.monotonic()
        )
        for message in messages:
            self.actor_ref.tell(message)
        taken = len(messages)
        if taken:
            logger.warning("taking in %d unprocessed trading_signals row(s) (%s)", taken, cause)
        if skipped:
            logger.info("left %d constituent trading_signals row(s) alone", skipped)

    def _catch_up_failed(self, error: str, cause: CatchUpCause) -> None:
        logger.error(
            "trading_signals not read (%s): %s; tried again in %g s while leading",
            cause,
            error,
            CATCH_UP_RETRY,
        )
        self.alarm("catch-up", CATCH_UP_RETRY, CatchUpDue(cause=CatchUpCause.RETRY))

    # --- messages ---------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case RawSignal():
                return self._admit(message)
            case UnliftableRow(row=row):
                self._admit_unliftable(row)
            case LeaderElected(token=token):
                self._start_catch_up(self._catch_up.elected(token))
            case LeadershipLost(token=token):
                self._catch_up.lost(token)
            case CatchUpRows(rows=rows, cause=cause):
                self._take_in_rows(rows, cause)
            case CatchUpFailed(error=error, cause=cause):
                self._catch_up_failed(error, cause)
            case CatchUpDue(cause=cause):
                self._start_catch_up(self._catch_up.due(cause))
            case SignalDecided(decision=decision):
                self._in_flight.pop(decision.signal_id, None)
            case ReleaseSignal(signal_id=signal_id):
                self._in_flight.pop(signal_id, None)
                self._recent.discard(signal_id)
            case GetBusyPartitions():
                return frozenset(
                    f.partition for f in self._in_flight.values() if f.partition is not None
                )
            case ChildRestarted(name=name):
                self._resend(name)
            case IntakeTick():
                self._forget_old()
            case IntakeLinkChanged(link=link, connected=connected):
                self._links[link] = connected
                if link is IntakeLink.PUBSUB:
                    self._start_catch_up(self._catch_up.subscription(connected))
            case GetIntakeSnapshot():
                return IntakeSnapshot(
                    received=self._counts["received"],
                    admitted=self._counts["admitted"],
                    rejected=self._counts["rejected"],
                    duplicates=self._counts["duplicates"],
                    in_flight=len(self._in_flight),
                    resent=self._counts["resent"],
                    links=tuple(sorted(self._links.items())),
                )
            case _:
                return NOT_HANDLED
        return None

    def _admit(self, raw: RawSignal) -> Admission:
        if raw.partition is None:  # counted where it came in, not again at its owner
            self._counts["received"] += 1
        parsed = parse_signal(raw.payload, max_bytes=self._max_bytes, total_bytes=raw.total_bytes)
        fence: LeaseToken | None = None
        if self._routing is not None and raw.partition is None:
            routed = self._routing.route(raw, parsed)
            if routed is not None:
                counted = {
                    AdmissionStatus.ACCEPTED: "routed",
                    AdmissionStatus.DUPLICATE: "duplicates",
                    AdmissionStatus.REJECTED: "rejected",
                }
                self._counts[counted[routed.status]] += 1
                return routed
        elif self._ownership is not None and raw.partition is not None:
            fence = self._ownership.token(raw.partition)
            if fence is None:
                # Read just before the partition was given up or lost: its entry stays
                # pending for the new owner, who takes it over.
                logger.info("%s left to the owner of partition %d", parsed.signal_id, raw.partition)
                return Admission(
                    signal_id=parsed.signal_id,
                    status=AdmissionStatus.DUPLICATE,
                    reason=Reason.DUPLICATE_SIGNAL.value,
                )
        if not self._first_sighting(parsed.signal_id, raw.stream_id):
            return Admission(
                signal_id=parsed.signal_id,
                status=AdmissionStatus.DUPLICATE,
                reason=Reason.DUPLICATE_SIGNAL.value,
            )
        if isinstance(parsed, InvalidSignal):
            self._record_signal(raw, parsed.signal_id, None, parsed.payload)
            check = CheckResult("parse", False, Reason.INVALID_SIGNAL, parsed.describe())
            self._reject(raw, parsed.signal_id, None, check)
            return Admission(
                signal_id=parsed.signal_id,
                status=AdmissionStatus.REJECTED,
                reason=Reason.INVALID_SIGNAL.value,
                errors=tuple((e.field, e.problem) for e in parsed.errors),
            )
        self._record_signal(raw, parsed.signal_id, parsed, parsed.payload)
        message = SubmitSignal(
            signal=parsed,
            source=raw.source,
            received_at=raw.received_at,
            received_mono=raw.received_mono,
            redelivered=raw.redelivered,
            fence=fence,
        )
        return self._admit_parsed(message, raw.stream_id, raw.partition)

    def _admit_unliftable(self, row: LiftedRow) -> None:
        """A ``trading_signals`` row that is no signal: decided invalid under its row's
        id (``db:<id>``), so the row is marked processed and not read again, and the
        same signal arriving intact by Redis is recognised as decided."""
        raw = RawSignal(
            payload=b"",
            source=SignalSource.DATABASE,
            received_at=self._clock.time(),
            received_mono=self._clock.monotonic(),
            redelivered=True,
        )
        self._counts["received"] += 1
        if not self._first_sighting(row.signal_id, None):
            return
        self._record_signal(raw, row.signal_id, None, row.text)
        check = CheckResult("parse", False, Reason.INVALID_SIGNAL, row.describe())
        self._reject(raw, row.signal_id, None, check)

    def _admit_parsed(
        self, message: SubmitSignal, stream_id: str | None, partition: int | None = None
    ) -> Admission:
        signal = message.signal
        freshness = check_freshness(signal, now=self._clock.time(), signal_timeout=self._timeout)
        if not freshness.passed:
            self._reject_message(message, freshness)
            return Admission(
                signal_id=signal.signal_id, status=AdmissionStatus.REJECTED, reason=freshness.reason
            )
        if len(self._in_flight) >= self._max_pending:
            check = CheckResult(
                "back_pressure",
                False,
                Reason.OVERLOADED,
                f"{len(self._in_flight)} signals in flight, "
                f"MAX_PENDING_SIGNALS={self._max_pending}",
            )
            self._reject_message(message, check, freshness)
            return Admission(
                signal_id=signal.signal_id,
                status=AdmissionStatus.REJECTED,
                reason=Reason.OVERLOADED.value,
            )
        validator = validator_for(signal.symbol, self._validators)
        admitted = evolve(
            message,
            checks=(
                CheckResult(
                    "parse", True, None, f"{signal.side} {signal.symbol} from {message.source}"
                ),
                freshness,
                CheckResult(
                    "back_pressure",
                    True,
                    None,
                    f"{len(self._in_flight)} of {self._max_pending} in flight",
                ),
            ),
        )
        self._in_flight[signal.signal_id] = _InFlight(admitted, validator, stream_id, partition)
        self._counts["admitted"] += 1
        self._send(validator, admitted)
        return Admission(signal_id=signal.signal_id, status=AdmissionStatus.ACCEPTED, reason=None)

    def _first_sighting(self, signal_id: str, stream_id: str | None) -> bool:
        """Note the id in the duplicate window; False when it was there already (a
        copy: counted, and its stream entry acknowledged unless its own decision will
        be). One look at the window: the add says whether the id was in it."""
        if self._recent.add(signal_id, self._clock.time()):
            return True
        self._counts["duplicates"] += 1
        in_flight = self._in_flight.get(signal_id)
        if stream_id and not (in_flight and in_flight.stream_id == stream_id):
            # Its decision (made or to come) is another entry's: this one is done.
            self._tell(ActorName.STORE_WRITER, AckStreamEntry(stream_id=stream_id))
        return False

    def _send(self, validator: str, message: SubmitSignal) -> None:
        self._outbox.tell(validator, message)

    def _resend(self, name: str) -> None:
        """A Validator was replaced: what it held without deciding goes to the new one.

        A copy may also wait in the directory for the new incarnation; it recognises
        the second one. A signal that itself makes the Validator fail does not come
        back here: the Validator decides it as an internal error instead of crashing.
        """
        again = [f for f in self._in_flight.values() if f.validator == name]
        for flight in again:
            # The replaced Validator may have claimed its intent already.
            flight.message = replace(flight.message, redelivered=True)
            self._send(name, flight.message)
        if again:
            self._counts["resent"] += len(again)
            logger.warning("sent %d in-flight signal(s) again to the new %s", len(again), name)

    def _record_signal(
        self, raw: RawSignal, signal_id: str, signal: Signal | None, payload: str
    ) -> None:
        self._tell(
            ActorName.STORE_WRITER,
            RecordSignal(
                signal_id=signal_id,
                source=raw.source,
                received_at=raw.received_at,
                received_mono=raw.received_mono,
                signal=signal,
                payload=payload,
                stream_id=raw.stream_id,
            ),
        )

    def _reject_message(self, message: SubmitSignal, *checks: CheckResult) -> None:
        signal = message.signal
        raw = RawSignal(
            payload=b"",
            source=message.source,
            received_at=message.received_at,
            received_mono=message.received_mono,
        )
        self._reject(raw, signal.signal_id, signal, *reversed(checks))

    def _reject(
        self, raw: RawSignal, signal_id: str, signal: Signal | None, *checks: CheckResult
    ) -> None:
        if not self._services.decided.add(signal_id):
            return
        self._counts["rejected"] += 1
        failure = next(c for c in checks if not c.passed)
        decision = Decision(
            signal_id=signal_id,
            symbol=None if signal is None else signal.symbol,
            side=None if signal is None else signal.side.value,
            outcome=Outcome.REJECTED.value,
            reason=None if failure.reason is None else failure.reason.value,
            detail=failure.detail,
            checks=tuple(checks),
            quantity=None,
            decided_at=self._clock.time(),
            decided_by=f"{self.name}#{self.context.incarnation}",
            intake_to_decision_ms=(self._clock.monotonic() - raw.received_mono) * 1000.0,
            intake_to_order_ms=None,
        )
        self._tell(ActorName.STORE_WRITER, RecordDecision(decision=decision))

    def _tell(self, name: str, message: Any) -> None:
        """Told when the turn ends (``Outbox``): the records of signals taken together
        in one message, before the signals go to their Validators."""
        if name == ActorName.STORE_WRITER:
            self._outbox.record(message)
        else:
            self._outbox.tell(name, message)

    def after_turn(self) -> None:
        self._outbox.flush()

    def _partition_of_ref(self, stream_id: str | None) -> int | None:
        if self._ownership is None or not stream_id:
            return None
        stream, _entry = split_ref(stream_id, "")
        return self._ownership.streams().get(stream)

    def _forget_old(self) -> None:
        self._recent.forget_older_than(self._clock.time())
