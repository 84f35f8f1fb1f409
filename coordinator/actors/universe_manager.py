"""UniverseManager: chooses the trading universe from market data, gradually.

Candles arrive as events from the MarketFeed (and, at start, from the RootTrading
``market_data`` table when there is one); every ``UNIVERSE_UPDATE_INTERVAL`` (or on
``POST /universe/refresh``) the statistics go through the filter chain, the rotation
plan applies hysteresis, and the result is stored, written to the ``universe:selected``
Redis key, and published as ``UniverseChanged``. A restart restores the last stored
universe before anything else, so there is no empty gap.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import defaultdict
from typing import Any

import pykka
import redis

from coordinator.actors.names import ActorName
from coordinator.actors.universe_leader import UniverseLeadership
from coordinator.cluster.lease import LossReason
from coordinator.config.parts import UniverseSettings
from coordinator.infra.store import StoreError
from coordinator.infra.universe_store import MarketSources, UniverseStore
from coordinator.logs import FailureLog
from coordinator.messages.leadership import LeaderElected, LeadershipLost
from coordinator.messages.pipeline import (
    GetLedgerSnapshot,
    OrderFinished,
    SignalDecided,
    StopLossRecorded,
)
from coordinator.messages.universe import (
    BlacklistSymbol,
    CandleUpdated,
    GetUniverse,
    GetUniverseHistory,
    NotBlacklisted,
    RotateUniverse,
    UnblacklistSymbol,
    UniverseChanged,
    UniverseHistory,
    UniverseSnapshot,
    UniverseTick,
    WarmStartLoaded,
)
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.supervisor.directory import ChildUnavailable
from coordinator.trading.blacklist import Blacklist, BlacklistEntry, StopLossRule
from coordinator.trading.market_stats import TIMEFRAMES_MS, CandleBook
from coordinator.trading.performance import PerformanceBook
from coordinator.trading.symbols import split_symbol
from coordinator.trading.universe_filters import Candidate, build_chain, run_chain
from coordinator.trading.universe_rotation import (
    Member,
    RotationPolicy,
    UniverseState,
    plan_rotation,
)

__all__ = ["UniverseManager"]

logger = logging.getLogger(__name__)

SELECTED_KEY = "universe:selected"
SYMBOLS_KEY = "trading:symbols"
_DAY_MS = 86_400_000


class UniverseManager(UniverseLeadership, ChildActor):
    subscriptions = (
        CandleUpdated,
        StopLossRecorded,
        SignalDecided,
        OrderFinished,
        LeaderElected,
        LeadershipLost,
    )
    settings: UniverseSettings

    def setup(self) -> None:
        services: Services = self.context.services
        self._services = services
        self._clock = self.context.clock
        self._settings = self.settings.manager
        self._interval = self.settings.update_interval
        settings = self._settings
        window = settings.window
        per_day = _DAY_MS // TIMEFRAMES_MS[settings.timeframe]
        self._book = CandleBook(settings.timeframe, keep=max(window + 2, per_day + 2))
        self._chain = build_chain(settings.filters, self.settings.chain)
        self._policy = RotationPolicy(
            size=self.settings.size,
            entry_rotations=settings.entry_rotations,
            entry_margin=settings.entry_margin,
            exit_misses=settings.exit_misses,
            max_changes=settings.max_changes,
            min_residency=settings.min_residency,
            core_pairs=frozenset(settings.core_pairs),
        )
        self._rule = StopLossRule(
            settings.auto_stop_losses, settings.auto_window, settings.auto_cooldown
        )
        self._stop_losses: dict[str, list[float]] = defaultdict(list)
        self._store = UniverseStore(services.endpoints.database_dsn)
        self.on_cleanup(self._store.close, what="universe store")
        self._sources = MarketSources(
            services.endpoints.redis_url,
            book_key=settings.book_ticker_key,
            cap_key=settings.market_cap_key,
            cap_file=settings.market_cap_file,
        )
        self.on_cleanup(self._sources.close, what="market sources")
        self._redis = redis.Redis.from_url(
            services.endpoints.redis_url, socket_connect_timeout=1, socket_timeout=2
        )
        self.on_cleanup(self._redis.close, what="redis")
        self._held: frozenset[str] = frozenset()
        self._last: dict[str, Any] = {}
        self._state = UniverseState(members={})
        self._token = None
        self._follow_failure = FailureLog(
            logger,
            failed="the leader's universe not read (the last one kept)",
            recovered="the leader's universe read again",
        )
        self._restore()
        self._follow_elector()
        self.worker_pool("warm")
        self.run_then_tell(
            functools.partial(self._warm_start, settings.timeframe, window), pool="warm"
        )
        self.ticker(min(self._interval, 30.0), UniverseTick)

    # --- start --------------------------------------------------------------------------

    def _restore(self) -> None:
        """The last stored universe and the blacklist, before anything is decided."""
        try:
            latest = self._store.latest()
            entries = self._store.blacklist()
        except StoreError as exc:
            # Without the store the universe is not left empty: the configured candidates
            # stand in until the first rotation, and it says so.
            logger.error("universe not restored (%s); starting from the candidates", exc)
            latest, entries = None, []
        self._apply_stored(latest, entries, "restored from the store")

    def _apply_stored(
        self, latest: dict[str, Any] | None, entries: list[BlacklistEntry], why: str
    ) -> None:
        now = self._clock.time()
        before = frozenset(self._state.members)
        self._blacklist = Blacklist({e.symbol: e for e in entries})
        if latest is not None:
            state = latest["state"]
            # A symbol blacklisted since the snapshot leaves at once, as on the leader.
            blocked = self._blacklist.active(now)
            self._state = UniverseState(
                members={s: Member(**m) for s, m in state["members"].items() if s not in blocked},
                streaks=state.get("streaks", {}),
                draining=frozenset(state.get("draining", [])),
            )
            self._performance = PerformanceBook(latest["performance"])
            self._last = {
                "at": latest["at"],
                "reason": latest["reason"],
                "scores": latest["scores"],
                "verdicts": latest["verdicts"],
                "added": latest["added"],
                "removed": latest["removed"],
            }
            self._next_at = latest["at"] + self._interval
            logger.info("universe %s: %s", why, ", ".join(sorted(self._state.members)))
        else:
            candidates = self._candidates()
            initial = list(dict.fromkeys([*self._policy.core_pairs, *candidates]))[
                : max(self._policy.size, len(self._policy.core_pairs))
            ]
            self._state = UniverseState(members={s: Member(since=now) for s in initial})
            self._performance = PerformanceBook()
            self._last = {"at": None, "reason": "initial", "scores": {}, "verdicts": {}}
            self._last.update(added=initial, removed=[])
            # The first rotation waits a little for candles to arrive.
            self._next_at = now + min(self._interval, 60.0)
            why = "initial: the configured candidates, until market statistics exist"
        after = frozenset(self._state.members)
        self._publish(
            added=tuple(sorted(after - before)),
            removed=tuple(sorted(before - after)),
            reasons={s: why for s in after ^ before},
        )

    def _warm_start(self, timeframe: str, window: int) -> WarmStartLoaded:
        """Worker thread: history from the RootTrading database, so a restart need not
        wait a day for the 24 h volume."""
        since = (
            self._clock.time() - max(window * TIMEFRAMES_MS[timeframe] / 1000.0, 86_400.0) - 3600
        )
        store = UniverseStore(self._services.endpoints.database_dsn, timeout=30.0)
        try:
            candles = tuple(store.market_data(timeframe, since, 2_000_000))
            message = WarmStartLoaded(candles=candles, error=None)
        except StoreError as exc:
            message = WarmStartLoaded(candles=(), error=str(exc))
        finally:
            store.close()
        return message

    # --- messages -----------------------------------------------------------------------

    def handle(self, message: Any) -> Any:
        match message:
            case LeaderElected(token=token):
                self._lead(token)
            case LeadershipLost(token=token, reason=reason):
                self._lost(token, f"leadership {reason}", planned=reason is LossReason.RELEASED)
            case UniverseTick() if self._token is None:
                self._follow_store()
            case RotateUniverse() | BlacklistSymbol() | UnblacklistSymbol() if self._token is None:
                return self._not_leading()
            case StopLossRecorded() if self._token is None:
                pass  # our stops' news: a follower has none, a lost leader's are too late
            case CandleUpdated(symbol=symbol, time_ms=time_ms, close=close, quote_volume=volume):
                self._book.add(symbol, time_ms, close, volume)
            case WarmStartLoaded(candles=candles, error=error):
                if error:
                    logger.warning("no warm start from market_data: %s", error)
                for symbol, time_ms, close, volume in candles:
                    self._book.add(symbol, time_ms, close, volume)
                if candles:
                    logger.info(
                        "warm start: %d candles of %d symbols", len(candles), len(self._book)
                    )
            case UniverseTick():
                self._expire_blacklist()
                if self._clock.time() >= self._next_at:
                    self._rotate("interval")
            case RotateUniverse(reason=reason):
                self._rotate(reason)
                return self._snapshot()
            case BlacklistSymbol(symbol=symbol, reason=reason, source=source, ttl=ttl):
                now = self._clock.time()
                self._blacklisted(
                    BlacklistEntry(symbol, reason, source, now, None if ttl is None else now + ttl)
                )
                return self._snapshot() if self._token is not None else self._not_leading()
            case UnblacklistSymbol(symbol=symbol):
                if symbol not in self._blacklist.entries:
                    return NotBlacklisted(symbol=symbol)
                if not self._fenced(self._store.delete_blacklisted, [symbol]):
                    return self._not_leading()
                self._blacklist, _ = self._blacklist.remove(symbol)
                logger.warning("%s taken off the blacklist", symbol)
                self._publish(added=(), removed=(), reasons={symbol: "taken off the blacklist"})
                return self._snapshot()
            case StopLossRecorded(symbol=symbol, at=at):
                times = [t for t in self._stop_losses[symbol] if at - t <= self._rule.window] + [at]
                self._stop_losses[symbol] = times
                entry = self._rule.check(symbol, times, at)
                if entry is not None and symbol not in self._blacklist.active(at):
                    self._blacklisted(entry)
            case SignalDecided(decision=decision):
                self._performance.decision(decision.symbol, decision.outcome)
            case OrderFinished(order=order):
                self._performance.order(
                    order.symbol, order.side, order.state, order.quantity, order.reference_price
                )
            case GetUniverse():
                return self._snapshot()
            case GetUniverseHistory(limit=limit):
                return UniverseHistory(rotations=tuple(self._store.history(limit)))
            case _:
                return NOT_HANDLED
        return None

    # --- rotation -----------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        match self._settings.candidates:
            case "config":
                return list(self.settings.symbols)
            case "redis":
                try:
                    raw = self._redis.get(SYMBOLS_KEY)
                    symbols = json.loads(raw) if raw else []
                    if not isinstance(symbols, list):
                        raise ValueError("not a JSON array")
                    return [str(s).upper() for s in symbols]
                except (redis.RedisError, ValueError) as exc:
                    logger.error(
                        "%s unreadable (%s): no candidates this rotation", SYMBOLS_KEY, exc
                    )
                    return []
            case _:
                return self._book.symbols()

    def _rotate(self, reason: str) -> None:
        now = self._clock.time()
        started = time.perf_counter()
        self._expire_blacklist()
        stats = self._book.compute(self._settings.window)
        spreads, spread_error = self._sources.spreads(now, self._settings.spread_max_age)
        caps, cap_error = self._sources.market_caps()
        for problem in (spread_error, cap_error):
            if problem:
                logger.warning("%s", problem)
        candidates = [
            Candidate(
                symbol=symbol,
                stats=stats.stats.get(symbol),
                spread_percent=spreads.get(symbol),
                market_cap=caps.get(symbol, caps.get(_base(symbol))),
            )
            for symbol in dict.fromkeys(self._candidates())
        ]
        result = run_chain(self._chain, candidates, stats.returns)
        self._held = self._held_symbols()
        blacklisted = self._blacklist.active(now)
        rotation = plan_rotation(
            self._state,
            {c.symbol: c.score or 0.0 for c in result.selected},
            blacklist=blacklisted,
            held=self._held,
            policy=self._policy,
            now=now,
        )
        self._state = rotation.state
        verdicts = {
            **result.verdicts,
            **{s: f"blacklisted: {self._blacklist.entries[s].reason}" for s in blacklisted},
        }
        self._last = {
            "at": now,
            "reason": reason,
            "scores": result.scores,
            "verdicts": verdicts,
            "reasons": rotation.reasons,
            "added": list(rotation.added),
            "removed": list(rotation.removed),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        self._next_at = now + self._interval
        self._save(reason, now)
        self._publish(added=rotation.added, removed=rotation.removed, reasons=rotation.reasons)
        logger.info(
            "universe rotated (%s) in %.0f ms: %s; +%s -%s",
            reason,
            self._last["duration_ms"],
            ", ".join(sorted(rotation.selected)) or "empty",
            ",".join(rotation.added) or "none",
            ",".join(rotation.removed) or "none",
        )

    def _held_symbols(self) -> frozenset[str]:
        try:
            return frozenset(
                self.context.directory.ask(
                    ActorName.LEDGER, GetLedgerSnapshot(), timeout=2.0
                ).positions
            )
        except (ChildUnavailable, pykka.Timeout, pykka.ActorDeadError) as exc:
            # Unknown positions: keep treating the earlier held ones as held (draining).
            logger.warning("positions unknown this rotation (%s); keeping the last known", exc)
            return self._held | self._state.draining

    def _save(self, reason: str, now: float) -> None:
        state = self._state
        record = {
            "at": now,
            "reason": reason,
            "selected": sorted(state.members),
            "added": self._last["added"],
            "removed": self._last["removed"],
            "draining": sorted(state.draining),
            "scores": self._last["scores"],
            "verdicts": {**self._last["verdicts"], **self._last.get("reasons", {})},
            "state": {
                "members": {
                    s: {"since": m.since, "misses": m.misses, "score": m.score}
                    for s, m in state.members.items()
                },
                "streaks": dict(state.streaks),
                "draining": sorted(state.draining),
            },
            "performance": self._performance.as_dict(),
        }
        try:
            if not self._fenced(self._store.save, record):
                return
        except StoreError as exc:
            logger.error("universe snapshot not stored: %s", exc)
        try:
            ttl = int(self._interval * 2 + 60)
            self._redis.set(SELECTED_KEY, json.dumps(sorted(state.members)), ex=ttl)
        except redis.RedisError as exc:
            logger.error("%s not written: %s", SELECTED_KEY, exc)

    # --- blacklist ----------------------------------------------------------------------

    def _blacklisted(self, entry: BlacklistEntry) -> None:
        try:
            if not self._fenced(self._store.put_blacklisted, entry):
                return
        except StoreError as exc:
            logger.error("blacklist entry for %s not stored: %s", entry.symbol, exc)
        self._blacklist = self._blacklist.add(entry)
        logger.warning("%s blacklisted by %s: %s", entry.symbol, entry.source, entry.reason)
        removed: tuple[str, ...] = ()
        if entry.symbol in self._state.members:
            members = dict(self._state.members)
            del members[entry.symbol]
            self._held = self._held_symbols()
            draining = frozenset(s for s in self._held if s not in members)
            self._state = UniverseState(
                members=members, streaks=self._state.streaks, draining=draining
            )
            removed = (entry.symbol,)
        self._publish(
            added=(), removed=removed, reasons={entry.symbol: f"blacklisted: {entry.reason}"}
        )

    def _expire_blacklist(self) -> None:
        self._blacklist, expired = self._blacklist.expire(self._clock.time())
        if expired:
            symbols = [e.symbol for e in expired]
            try:
                self._fenced(self._store.delete_blacklisted, symbols)
            except StoreError as exc:
                logger.error("expired blacklist entries not removed from the store: %s", exc)
            logger.info("blacklist expired for %s", ", ".join(symbols))
            self._publish(added=(), removed=(), reasons={s: "blacklist expired" for s in symbols})

    # --- out ----------------------------------------------------------------------------

    def _publish(
        self, *, added: tuple[str, ...], removed: tuple[str, ...], reasons: dict[str, str]
    ) -> None:
        now = self._clock.time()
        self.context.directory.publish(
            UniverseChanged(
                selected=self._state.selected,
                added=tuple(added),
                removed=tuple(removed),
                draining=self._state.draining,
                blacklist=self._blacklist_pairs(now),
                reasons=tuple(sorted(reasons.items())),
                at=now,
            )
        )

    def _blacklist_pairs(self, now: float) -> tuple[tuple[str, str], ...]:
        active = self._blacklist.active(now)
        return tuple(sorted((s, self._blacklist.entries[s].reason) for s in active))

    def _snapshot(self) -> UniverseSnapshot:
        now = self._clock.time()
        state = self._state
        last = self._last
        return UniverseSnapshot(
            selected=state.selected,
            blacklist=self._blacklist_pairs(now),
            members=tuple(sorted(state.members.items())),
            waiting=dict(state.streaks),
            draining=state.draining,
            core_pairs=frozenset(self._policy.core_pairs),
            blacklisted=tuple(
                e
                for e in sorted(self._blacklist.entries.values(), key=lambda e: e.symbol)
                if not e.expired(now)
            ),
            last_at=last.get("at"),
            next_at=self._next_at,
            last_reason=last.get("reason"),
            scores=dict(last.get("scores", {})),
            verdicts=dict(last.get("verdicts", {})),
            added=tuple(last.get("added", [])),
            removed=tuple(last.get("removed", [])),
            reasons=dict(last.get("reasons", {})),
            rotation_ms=last.get("duration_ms"),
            filters=tuple(f"{f.name}: {f.describe()}" for f in self._chain),
            symbols_with_data=len(self._book),
            performance=self._performance.as_dict(),
        )


def _base(symbol: str) -> str:
    try:
        return split_symbol(symbol)[0]
    except ValueError:
        return symbol
