"""StoreWriter: the pipeline's records, batched into PostgreSQL off the hot path.

It is also the gate of decisions: the first decision per signal wins and is the only
one published (``SignalDecided``). A batch PostgreSQL does not take goes to the local
journal (fsync'd) and is replayed when the database answers again, so an outage loses
nothing; a Redis Stream entry is acknowledged only once its decision is in one of the two.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from typing import Any

import redis

from coordinator.cluster.fencing import LeaseLost, LeaseToken
from coordinator.compact_ids import CompactIdWindow, id_digest, pack_sorted_digests
from coordinator.config.parts import StoreSettings
from coordinator.infra import pipeline_rows
from coordinator.infra.journal import Journal
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.order_states import HELD_MARK, RESENT_MARK
from coordinator.infra.partition_reader import split_ref
from coordinator.infra.pipeline_store import PipelineStore, RecordError
from coordinator.infra.records import (
    RecordKind,
    audit_record,
    decision_record,
    order_record,
    signal_record,
)
from coordinator.infra.store import StoreError
from coordinator.messages.audit import AuditTrail, GetAuditTrail, RecordAudit
from coordinator.messages.leadership import LeaderElected
from coordinator.messages.pipeline import (
    AckStreamEntry,
    Decision,
    GetStoredRecords,
    GetStoreSnapshot,
    GetUndecided,
    OrderFinished,
    OrderRecord,
    RecordDecision,
    RecordOrder,
    RecordSignal,
    SignalDecided,
    StoredRecords,
    StoreSnapshot,
    StoreTick,
    UndecidedSignals,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.trading.backoff import Backoff
from coordinator.trading.execution import FINAL_ORDER_STATES, OrderStatus
from coordinator.trading.signal_rows import db_id_of
from coordinator.trading.signals import Signal, SignalSource, parse_signal
from coordinator.trading.stops import EXIT_SOURCE

__all__ = ["StoreWriter"]

logger = logging.getLogger(__name__)

_RECENT_DECIDED = 200_000
_UNKNOWN_KEPT = 100
_RETRY = Backoff(0.1, 5.0)
"""Waits between attempts to write to PostgreSQL again while it refuses writes."""


class StoreWriter(ChildActor):
    subscriptions = (LeaderElected,)
    # Written at the next StoreTick (every flush_interval) whenever they come: waking
    # for each was three thread switches per order. An ask (GetUndecided, a snapshot)
    # wakes it, and takes what waits before it, in order.
    deferred_messages = (RecordSignal, RecordOrder, RecordDecision, AckStreamEntry, RecordAudit)
    settings: StoreSettings

    def setup(self) -> None:
        services: Services = self.context.services
        settings = self.settings
        self._clock = self.context.clock
        self._services = services
        self._batch_size = settings.execution.batch_size
        self._store = PipelineStore(services.endpoints.database_dsn, timeout=5.0)
        self.on_cleanup(self._store.close, what="store")
        self._journal: Journal = services.journal
        self._quarantine = Journal(settings.data_dir.resolve() / "quarantine.jsonl")
        self._intake = settings.intake
        self._redis: redis.Redis | None = None
        self.on_cleanup(self._close_redis, what="redis")
        self._records: list[dict[str, Any]] = []
        # The batch's decision rows encoded once, for the write and for their events.
        self._encoded: dict[str, str] = {}
        self.on_cleanup(self._keep_unflushed, what="unflushed records")
        self._events: list[Any] = []
        self._acks: list[str] = []
        self._undecided: OrderedDict[str, RecordSignal] = OrderedDict()
        self._decided = CompactIdWindow(_RECENT_DECIDED)
        self._unknown: list[OrderRecord] = []
        self._written = 0
        self._postgres_ok = True
        self._last_error: str | None = None
        self._retry_at = 0.0
        self._retry_failures = 0
        self._load()
        self.ticker(settings.execution.flush_interval, StoreTick)

    def _keep_unflushed(self) -> None:
        # Whatever is still batched must not die with this incarnation.
        if not self._records:
            return
        try:
            self._journal.append(self._records)
            logger.warning("kept %d unflushed records in the journal", len(self._records))
            self._records = []
        except OSError:
            logger.exception("could not keep %d unflushed records", len(self._records))

    def _close_redis(self) -> None:
        if self._redis is not None:
            self._redis.close()

    def _load(self) -> None:
        """Rebuild what an earlier incarnation or process left: undecided signals, ids."""
        now = self._clock.time()
        try:
            # The journal first: intents it holds from before a crash must be in the
            # table when orders left pending by that run are marked unknown.
            self._replay_journal()
            if self.context.incarnation == 1:
                self._orphaned_orders()
            horizon = now - max(self.settings.signal_timeout * 10, 600.0)
            rows = self._store.undecided(horizon)
            for entry in self._store.unknown_orders(_UNKNOWN_KEPT):
                if entry["state"] == OrderStatus.UNKNOWN:
                    self._unknown.append(
                        OrderRecord(
                            **{
                                k: v
                                for k, v in entry.items()
                                if k in OrderRecord.__slots__ and k != "state"
                            },
                            state=OrderStatus.UNKNOWN,
                        )
                    )
        except StoreError as exc:
            logger.error("could not read the store at start (%s); starting empty", exc)
            self._postgres_ok = False
            self._last_error = str(exc)
            rows = []
        for row in rows:
            # Stored as it was taken in: the size limit was checked then, and may have
            # been lowered since.
            parsed = parse_signal(row["payload"], max_bytes=sys.maxsize)
            self._undecided[row["signal_id"]] = RecordSignal(
                signal_id=row["signal_id"],
                source=SignalSource.of_record(row["source"]),
                received_at=row["received_at"],
                received_mono=self._clock.monotonic() - (now - row["received_at"]),
                signal=parsed if isinstance(parsed, Signal) else None,
                payload=row["payload"],
                stream_id=row["stream_id"],
            )
        if rows:
            logger.warning("%d signal(s) received earlier have no decision yet", len(rows))
        decided = self._services.decided
        # A later incarnation finds them here already; with the store down, the error
        # above said so once.
        if self.context.incarnation == 1 and decided.takes_generations and self._postgres_ok:
            try:
                self._store.recent_decision_digests(
                    now - self._intake.dedup_window,
                    decided.limit,
                    decided.generation,
                    lambda _, packed: decided.add_generation(packed),
                )
            except StoreError as exc:
                logger.error(
                    "the signals decided before this start were not read back (%s): a copy"
                    " of one delivered again is stopped by the intake's duplicate window"
                    " only",
                    exc,
                )

    def _orphaned_orders(self) -> None:
        """At process start, an order still pending or sent belongs to a process that
        died before it knew the outcome: it may have been executed. Never resend it.
        Only on the leader, and never the orders of a live instance: while another
        instance holds the leader lease, the sweep waits until this one leads (the
        holder gone: a process killed a moment ago, say); then, and at each takeover,
        it takes what is older than this process."""
        leader = self._live_leader()
        if leader is not None:
            logger.warning("orders in flight not swept until this instance leads: %s", leader)
        else:
            self._sweep(None, None)
        # Before the intake reads the table: a row of a signal decided earlier (its mark
        # lost, or made while the table was absent) is not read again.
        marked = self._store.mark_decided_trading_signals(
            self._clock.time() - max(self._intake.dedup_window, 86_400.0)
        )
        if marked:
            logger.info("%d trading_signals row(s) of signals decided earlier marked", marked)

    def _sweep(self, before: float | None, fence: LeaseToken | None) -> None:
        now = self._clock.time()
        identity = self._services.identity
        count = self._store.mark_orphaned_orders(
            now,
            before=before,
            fence=fence,
            instance=None if identity is None else identity.instance,
            liveness=5.0 if identity is None else identity.liveness,
        )
        if count:
            logger.error(
                "ALERT %d order(s) left pending by an earlier run are now unknown; "
                "check them at the Trader",
                count,
            )
        exits = self._store.decide_orphaned_exits(now, before=before, fence=fence)
        if exits:
            logger.warning("%d exit(s) left undecided by an earlier run decided now", exits)

    def _on_elected(self, token: LeaseToken) -> None:
        """Leading (at start, or taking over from a leader gone): the orders of
        instances gone, this one's earlier life included, are orphans."""
        # Twice at most: the first use of a connection left broken by an outage (which
        # may be what ended the last term) fails; the sweep is idempotent.
        for attempt in (1, 2):
            try:
                self._sweep(self._services.started_at, token)
                return
            except LeaseLost as exc:
                logger.warning("orders in flight not swept: %s", exc)
                return
            except StoreError as exc:
                if attempt == 2:
                    logger.warning("orders in flight not swept: %s", exc)

    def _live_leader(self) -> str | None:
        """Why the sweep must wait: a live instance holds the leader lease (or whether
        one does cannot be read). None when no one leads."""
        leases = LeaseStore(self._services.endpoints.database_dsn, timeout=5.0)
        try:
            row = leases.read(self.settings.lease)
        except StoreError as exc:
            return f"the leader lease could not be read ({exc})"
        finally:
            leases.close()
        if row is None or row.remaining(self._clock.time()) <= 0:
            return None
        return f"{row.holder} leads (lease {row.name}, generation {row.generation})"

    def handle(self, message: Any) -> Any:
        match message:
            case LeaderElected(token=token):
                self._on_elected(token)
            case RecordSignal():
                self._records.append(signal_record(message))
                self._undecided[message.signal_id] = message
            case RecordDecision(decision=decision):
                self._record_decision(decision)
            case RecordOrder(order=order):
                self._record_order(order)
            case AckStreamEntry(stream_id=stream_id):
                self._acks.append(stream_id)
            case RecordAudit():
                self._records.append(audit_record(message))
            case StoreTick():
                self._flush()
            case GetUndecided():
                return self._undecided_signals()
            case GetStoredRecords():
                return self._read(message)
            case GetAuditTrail(limit=limit):
                try:
                    return AuditTrail(entries=tuple(self._store.audit(limit)))
                except StoreError as exc:
                    raise StoreError(f"PostgreSQL did not answer: {exc}") from exc
            case GetStoreSnapshot():
                return StoreSnapshot(
                    postgres_ok=self._postgres_ok,
                    pending=len(self._records),
                    journaled=len(self._journal),
                    written=self._written,
                    last_error=self._last_error,
                    undecided=len(self._undecided),
                    unknown_orders=tuple(self._unknown),
                )
            case _:
                return NOT_HANDLED
        if len(self._records) >= self._batch_size:
            self._flush()
        return None

    def _undecided_signals(self) -> UndecidedSignals:
        """What the intake rebuilds itself from, besides the store's ids."""
        unwritten = self._records + (self._journal.records() if len(self._journal) else [])
        # Exits are the TrailingStop's to follow up (as at a start): taken in by the intake,
        # one would go again as a plain SELL, without its holding or its lease.
        return UndecidedSignals(
            signals=tuple(r for r in self._undecided.values() if r.source != EXIT_SOURCE),
            unwritten=pack_sorted_digests(
                {id_digest(r["signal_id"]) for r in unwritten if r["kind"] == RecordKind.SIGNAL}
            ),
        )

    def _record_order(self, order: OrderRecord, order_json: str | None = None) -> None:
        self._records.append(order_record(order))
        if order.state not in FINAL_ORDER_STATES:
            return
        wire = None if order_json is None else pipeline_rows.finished_event(order_json)
        self._events.append(OrderFinished(order=order, wire=wire))
        if order.state != OrderStatus.UNKNOWN:
            return
        self._unknown = [order, *self._unknown][:_UNKNOWN_KEPT]
        if (order.error or "").startswith((HELD_MARK, RESENT_MARK)):
            # Held after a 5xx, or sent again: the reconciler looks for it at once.
            logger.warning(
                "order %s held for reconciliation: %s", order.client_order_id, order.error
            )
            return
        logger.error(
            "ALERT order %s for %s %s %s: outcome unknown, not sent again (%s)",
            order.client_order_id,
            order.side,
            order.quantity,
            order.symbol,
            order.error,
        )

    def _record_decision(self, decision: Decision) -> None:
        if not self._decided.add(decision.signal_id):
            logger.warning(
                "second decision for %s dropped (%s); the first stands",
                decision.signal_id,
                decision.outcome,
            )
            return
        received = self._undecided.pop(decision.signal_id, None)
        record = decision_record(decision)
        self._records.append(record)
        order, order_json = decision.order, None  # its fields encoded once, for both events
        if order is not None:
            order_json = pipeline_rows.order_event_json(order)
            if order.state in FINAL_ORDER_STATES:
                self._record_order(order, order_json)
        source = received.source if received is not None else SignalSource.UNKNOWN
        wire: bytes | None = None
        try:
            row_json = pipeline_rows.encode_row(pipeline_rows.decision_row(record))
        except ValueError:
            pass  # a NaN: the write sets it aside, the event is encoded as it is
        else:
            self._encoded[decision.signal_id] = row_json
            wire = pipeline_rows.decided_event(row_json, source, order_json)
        db_id = db_id_of(decision.signal_id)
        if db_id is not None:
            # RootTrading's row of this signal, however it came in (pub/sub, stream,
            # POST /signals, the table itself), rejections included: written with the
            # decision, in the same batch and transaction.
            self._records.append({"kind": RecordKind.PROCESSED, "db_id": db_id})
        if received is not None and received.stream_id:
            self._acks.append(received.stream_id)
        self._events.append(SignalDecided(decision=decision, source=source, wire=wire))

    # --- flushing ---------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._records and not self._acks and not len(self._journal):
            return
        now = self._clock.monotonic()
        if len(self._journal) and now >= self._retry_at:
            self._replay_journal()
        records, self._records = self._records, []
        encoded, self._encoded = self._encoded, {}
        if records:
            postgres_resting = not self._postgres_ok and now < self._retry_at
            if len(self._journal) or postgres_resting:
                self._to_journal(records)
            else:
                try:
                    inserted = self._write(records, encoded)
                    self._written += len(records)
                    self._store_ok()
                    self._drop_late_duplicates(records, inserted)
                except StoreError as exc:
                    self._store_failed(exc, now)
                    self._to_journal(records)
        self._acknowledge()
        events, self._events = self._events, []
        self.context.directory.publish_all(events)

    def _write(
        self, records: list[dict[str, Any]], encoded: dict[str, str] | None = None
    ) -> set[str]:
        """Write, setting aside any record PostgreSQL refuses so the rest goes in."""
        try:
            return self._store.write(records, encoded)
        except RecordError as exc:
            if len(records) == 1:
                self._quarantine.append(records)
                logger.error(
                    "ALERT a %s record for %s was refused by PostgreSQL (%s); kept in %s",
                    records[0].get("kind"),
                    records[0].get("signal_id")
                    or records[0].get("client_order_id")
                    or records[0].get("path"),
                    exc,
                    self._quarantine.path,
                )
                return set()
            middle = len(records) // 2
            return self._write(records[:middle], encoded) | self._write(records[middle:], encoded)

    def _to_journal(self, records: list[dict[str, Any]]) -> None:
        # The journal is durable: decisions in it count as stored.
        self._journal.append(records)

    def _drop_late_duplicates(self, records: list[dict[str, Any]], inserted: set[str]) -> None:
        """A decision the database already had (from before this process's memory)."""
        decided = {r["signal_id"] for r in records if r["kind"] == RecordKind.DECISION}
        for signal_id in decided - inserted:
            logger.warning("decision for %s was already stored; this one dropped", signal_id)
            self._events = [
                e
                for e in self._events
                if not (isinstance(e, SignalDecided) and e.decision.signal_id == signal_id)
            ]

    def _replay_journal(self) -> None:
        if not len(self._journal):
            return
        records = self._journal.records()
        try:
            self._write(records)
        except StoreError as exc:
            self._store_failed(exc, self._clock.monotonic())
            return
        self._journal.clear(len(records))
        self._written += len(records)
        self._store_ok()
        logger.warning("replayed %d journaled record(s) into PostgreSQL", len(records))

    def _store_ok(self) -> None:
        if not self._postgres_ok:
            logger.warning("PostgreSQL takes writes again")
        self._postgres_ok = True
        self._last_error = None
        self._retry_failures = 0

    def _store_failed(self, exc: StoreError, now: float) -> None:
        if self._postgres_ok:
            logger.error("PostgreSQL refuses writes (%s); journaling locally", exc)
        self._postgres_ok = False
        self._last_error = str(exc)
        self._retry_at = now + _RETRY.delay(self._retry_failures)
        self._retry_failures += 1

    def _acknowledge(self) -> None:
        if not self._acks:
            return
        intake = self._intake
        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    self._services.endpoints.redis_url, socket_connect_timeout=1, socket_timeout=2
                )
            by_stream: dict[str, list[str]] = {}
            for ref in self._acks:
                stream, entry_id = split_ref(ref, intake.stream)
                by_stream.setdefault(stream, []).append(entry_id)
            pipe = self._redis.pipeline(transaction=False)
            for stream, entry_ids in by_stream.items():
                pipe.xack(stream, intake.stream_group, *entry_ids)
            pipe.execute()
            self._acks = []
        except redis.RedisError as exc:
            # Kept, and tried again at the next flush; an entry never acknowledged is
            # delivered again and recognised as a duplicate.
            logger.warning("stream acknowledgements delayed: %s", exc)
            if len(self._acks) > 100_000:
                self._acks = self._acks[-100_000:]

    # --- reads for the API ------------------------------------------------------------

    def _read(self, query: GetStoredRecords) -> StoredRecords:
        try:
            if query.signal_id is not None:
                return StoredRecords(signal=self._store.signal(query.signal_id))
            rows = self._store.decisions(
                symbol=query.symbol, outcome=query.outcome, limit=query.limit
            )
        except StoreError as exc:
            raise StoreError(f"PostgreSQL did not answer: {exc}") from exc
        return StoredRecords(decisions=tuple(rows))
