"""ServiceHealth: probes the dependencies, keeps their breakers, owns the trading state.

Probes run on worker threads and come back as ``ProbeCompleted`` messages, so the actor
never waits on the network and always answers its queries at once. The kill switch is
kept in PostgreSQL; until it has been read, trading is held HALTED.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from coordinator.actors.kill_switch import exit_policy, keep_halt, kept_halt
from coordinator.config.parts import HealthSettings
from coordinator.infra.probes import (
    HttpHealthProbe,
    PostgresProbe,
    Probe,
    ProbeFailed,
    RedisProbe,
)
from coordinator.infra.store import KillSwitchStore, StoreError
from coordinator.messages.health import (
    DependencyChanged,
    DependencySnapshot,
    GetHealthSnapshot,
    HaltStateLoaded,
    HaltStatePersisted,
    HaltTrading,
    HealthSnapshot,
    HealthTick,
    PortfolioGuardsChanged,
    ProbeCompleted,
    ResumeTrading,
    TradingStateChanged,
)
from coordinator.messages.pipeline import IntakeLinkChanged, TraderCallOutcome
from coordinator.runtime import Services
from coordinator.supervisor.child import NOT_HANDLED, ChildActor
from coordinator.trading.breaker import Breaker, BreakerPhase, BreakerPolicy
from coordinator.trading.trading_state import (
    Dependency,
    DependencyStatus,
    HaltState,
    StateReason,
    dependency_status,
    derive_trading_status,
)

__all__ = ["ServiceHealth", "build_probes"]

logger = logging.getLogger(__name__)


def build_probes(services: Services, timeout: float) -> dict[Dependency, Probe | None]:
    endpoints = services.endpoints
    return {
        Dependency.TRADER: (
            HttpHealthProbe(endpoints.trader_url, timeout=timeout) if endpoints.trader_url else None
        ),
        Dependency.PORTFOLIO: (
            HttpHealthProbe(endpoints.portfolio_url, timeout=timeout)
            if endpoints.portfolio_url
            else None
        ),
        Dependency.REDIS: RedisProbe(endpoints.redis_url, timeout=timeout),
        Dependency.POSTGRES: PostgresProbe(endpoints.database_dsn, timeout=timeout),
    }


@dataclass
class _Tracked:
    probe: Probe | None
    breaker: Breaker
    last_ok: bool | None = None
    last_probe_at: float | None = None
    last_latency: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    in_flight: tuple[int, float] | None = None
    """(sequence, monotonic start) of the probe running now."""

    @property
    def status(self) -> DependencyStatus:
        if self.probe is None:
            return DependencyStatus.NOT_CONFIGURED
        return dependency_status(self.breaker, self.last_ok)


_REACHED_BY_A_LINK = frozenset(
    {DependencyStatus.FAILING, DependencyStatus.DOWN, DependencyStatus.UNCHECKED}
)
"""Redis statuses an intake link's connection turns to up."""


class ServiceHealth(ChildActor):
    subscriptions = (IntakeLinkChanged,)
    settings: HealthSettings

    def setup(self) -> None:
        services: Services = self.context.services
        health = self.settings.health
        self._clock = self.context.clock
        self._probe_timeout = health.probe_timeout
        policy = BreakerPolicy(
            health.failure_threshold,
            health.open_seconds,
            health.open_max_seconds,
        )
        self._tracked = {
            dependency: _Tracked(probe=probe, breaker=Breaker(policy))
            for dependency, probe in build_probes(services, health.probe_timeout).items()
        }
        # A probe still running keeps its connection until its thread is done with it.
        self.worker_pool("probe", 2 * len(Dependency))
        self.on_cleanup(self._release_probes, what="probes")
        # The kill switch has its own single thread: its reads and writes stay in order;
        # queued writes still run at the end, then the connection is closed.
        store_worker = self.worker_pool("store", finish_queued=True)
        self._store = KillSwitchStore(services.endpoints.database_dsn, timeout=self._probe_timeout)
        self.on_cleanup(lambda: store_worker.submit(self._store.close), what="kill switch store")
        self._sequence = 0
        self._kept = services.kept_halt
        self._halt_generation = 0
        self._halt, self._halt_persisted = kept_halt(self._kept)
        self._store_busy = False
        self._links: dict[str, tuple[bool, str | None]] = {}
        self._guards: tuple[StateReason, ...] = ()
        self._trading = derive_trading_status(self._statuses(), self._halt)
        self._trading_since = self._clock.time()
        self._trader_clean = services.trader_calls_clean
        self._note_trader_clean()
        if self._halt_persisted:
            self._load_halt_state()
        else:
            # An operator's action the last incarnation could not store yet.
            self._persist_halt()
        self.ticker(self.settings.check_interval, HealthTick, immediately=True)

    def _release_probes(self) -> None:
        for tracked in self._tracked.values():
            if tracked.probe is not None and tracked.in_flight is None:
                tracked.probe.close()

    def handle(self, message: Any) -> Any:
        match message:
            case HealthTick():
                self._tick()
            case ProbeCompleted():
                self._probe_completed(message)
            case GetHealthSnapshot():
                return self._snapshot()
            case HaltTrading(reason=reason, by=by, exits=exits):
                self._set_halt(
                    HaltState(active=True, reason=reason, by=by, at=self._clock.time(), exits=exits)
                )
                logger.warning("trading halted by %s (exits %s): %s", by, exits, reason)
                return self._snapshot()
            case ResumeTrading(by=by):
                self._set_halt(HaltState(active=False, by=by, at=self._clock.time()))
                logger.warning("trading resumed by %s", by)
                return self._snapshot()
            case HaltStateLoaded():
                self._halt_loaded(message)
            case PortfolioGuardsChanged(reasons=reasons):
                if reasons != self._guards:
                    self._guards = reasons
                    self._update_trading_state()
            case TraderCallOutcome(ok=ok, error=error):
                self._trader_call(ok, error)
            case IntakeLinkChanged(link=link, connected=connected, error=error):
                self._links[link] = (connected, error)
                if not connected:
                    logger.warning("intake %s disconnected: %s", link, error)
                elif self._tracked[Dependency.REDIS].status in _REACHED_BY_A_LINK:
                    # A link that connected reached Redis: up from now, not from the
                    # next probe. The signals the intake takes in from the aggregator's
                    # table on this reconnection would be refused meanwhile.
                    self._record(Dependency.REDIS, ok=True, latency=None, error=None, probe=False)
            case HaltStatePersisted(generation=generation, error=error):
                self._store_busy = False
                if generation == self._halt_generation:
                    self._halt_persisted = error is None
                    self._keep_halt()
                    if error is not None:
                        logger.error("kill switch not stored (retrying): %s", error)
            case _:
                return NOT_HANDLED
        return None

    # --- probing ----------------------------------------------------------------------

    def _tick(self) -> None:
        now = self._clock.monotonic()
        for dependency, tracked in self._tracked.items():
            if tracked.probe is None:
                continue
            if tracked.in_flight is not None:
                _, started = tracked.in_flight
                # The probe has its own timeouts; this catches one that ignores them.
                if now - started > 2 * self._probe_timeout + 1:
                    self._record(
                        dependency,
                        ok=False,
                        latency=now - started,
                        error=f"probe did not return within {now - started:.1f} s",
                    )
                continue
            if not tracked.breaker.allows_call(now):
                continue
            tracked.breaker = tracked.breaker.before_call(now)
            self._sequence += 1
            tracked.in_flight = (self._sequence, now)
            self.run_then_tell(
                functools.partial(self._run_probe, dependency, tracked.probe, self._sequence),
                pool="probe",
            )
        if self._halt.active is None or not self._halt_persisted:
            self._retry_halt_store()

    def _run_probe(self, dependency: Dependency, probe: Probe, sequence: int) -> ProbeCompleted:
        """Runs on a worker thread; what it found goes back by message only."""
        started = time.perf_counter()
        error: str | None = None
        try:
            probe()
        except ProbeFailed as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        return ProbeCompleted(
            dependency=dependency,
            sequence=sequence,
            ok=error is None,
            latency=time.perf_counter() - started,
            error=error,
            at=self._clock.time(),
        )

    def _probe_completed(self, message: ProbeCompleted) -> None:
        tracked = self._tracked[message.dependency]
        if tracked.in_flight is None or tracked.in_flight[0] != message.sequence:
            return  # answer to a probe already given up
        self._record(
            message.dependency,
            ok=message.ok,
            latency=message.latency,
            error=message.error,
            at=message.at,
        )

    def _record(
        self,
        dependency: Dependency,
        *,
        ok: bool,
        latency: float | None,
        error: str | None,
        at: float | None = None,
        probe: bool = True,
    ) -> None:
        """A probe's result, or (``probe`` False) the outcome of a real call."""
        tracked = self._tracked[dependency]
        before = tracked.status
        now = self._clock.monotonic()
        at = self._clock.time() if at is None else at
        if probe:
            tracked.in_flight = None
            tracked.last_probe_at = at
            tracked.last_latency = latency
        tracked.last_ok = ok
        if ok:
            tracked.breaker = tracked.breaker.after_success()
        else:
            tracked.breaker = tracked.breaker.after_failure(now)
            tracked.last_error = error
            tracked.last_error_at = at
        after = tracked.status
        if dependency is Dependency.TRADER:
            self._note_trader_clean()
        if dependency is Dependency.POSTGRES and ok:
            # The kill switch may be waiting on PostgreSQL: read or store it now,
            # not at the next regular tick.
            self._retry_halt_store()
        if tracked.breaker.phase is BreakerPhase.OPEN:
            self._schedule_trial(dependency, tracked, now)
        if after is not before:
            log = logger.info if after is DependencyStatus.UP else logger.warning
            log(
                "%s is %s (was %s, breaker %s)%s",
                dependency,
                after,
                before,
                tracked.breaker.phase,
                f": {error}" if error else "",
            )
            self.context.directory.publish(
                DependencyChanged(
                    dependency=dependency,
                    status=after,
                    previous=before,
                    breaker=tracked.breaker.phase,
                    error=error,
                    at=at,
                )
            )
            self._update_trading_state()

    def _schedule_trial(self, dependency: Dependency, tracked: _Tracked, now: float) -> None:
        """Probe again as soon as the breaker allows, not at the next regular tick."""
        delay = tracked.breaker.seconds_until_trial(now)
        if delay is None:
            return
        self.alarm(f"trial-{dependency}", delay, HealthTick())

    def _trader_call(self, ok: bool, error: str | None) -> None:
        """Orders count for the Trader's breaker: 5xx, timeouts and refused connections."""
        tracked = self._tracked[Dependency.TRADER]
        if tracked.probe is None:
            return
        breaker = tracked.breaker
        if ok and breaker.phase is BreakerPhase.CLOSED and breaker.failures == 0:
            return  # the common case: nothing changes
        self._record(
            Dependency.TRADER,
            ok=ok,
            latency=None,
            error=None if error is None else f"POST /order: {error}",
            probe=False,
        )

    def _note_trader_clean(self) -> None:
        tracked = self._tracked.get(Dependency.TRADER)
        breaker = None if tracked is None or tracked.probe is None else tracked.breaker
        if breaker is None or (breaker.phase is BreakerPhase.CLOSED and breaker.failures == 0):
            self._trader_clean.set()
        else:
            self._trader_clean.clear()

    # --- trading state and kill switch ------------------------------------------------

    def _statuses(self) -> dict[Dependency, DependencyStatus]:
        return {dependency: tracked.status for dependency, tracked in self._tracked.items()}

    def _update_trading_state(self) -> None:
        status = derive_trading_status(self._statuses(), self._halt, self._guards)
        if status == self._trading:
            return
        previous, self._trading = self._trading, status
        self._trading_since = self._clock.time()
        log = logger.warning if status.state is not previous.state else logger.info
        log(
            "trading state %s (was %s): %s",
            status.state,
            previous.state,
            "; ".join(reason.detail for reason in status.reasons) or "all dependencies up",
        )
        self.context.directory.publish(
            TradingStateChanged(status=status, previous=previous, at=self._trading_since)
        )

    def _set_halt(self, halt: HaltState) -> None:
        self._halt_generation += 1
        self._halt = halt
        self._halt_persisted = False
        self._keep_halt()
        self._update_trading_state()
        self._persist_halt()

    def _persist_halt(self) -> None:
        generation, halt = self._halt_generation, self._halt
        self._store_busy = True

        self.run_then_tell(
            lambda: self._store.save(
                halted=bool(halt.active),
                reason=halt.reason,
                by=halt.by,
                at=halt.at or 0.0,
                exits=halt.exits.value,
            ),
            lambda _: HaltStatePersisted(generation=generation, error=None),
            on_error=lambda exc: HaltStatePersisted(generation=generation, error=str(exc)),
            errors=(StoreError,),
            pool="store",
        )

    def _load_halt_state(self) -> None:
        generation = self._halt_generation
        self._store_busy = True

        self.run_then_tell(
            self._store.load,
            lambda position: HaltStateLoaded(
                generation=generation,
                halted=position.halted,
                reason=position.reason,
                by=position.by,
                at=position.at,
                error=None,
                exits=exit_policy(position.exits),
            ),
            on_error=lambda exc: HaltStateLoaded(
                generation=generation, halted=None, reason="", by="", at=None, error=str(exc)
            ),
            errors=(StoreError,),
            pool="store",
        )

    def _halt_loaded(self, message: HaltStateLoaded) -> None:
        self._store_busy = False
        if message.generation != self._halt_generation:
            return  # an operator acted meanwhile; that wins
        if message.halted is None:
            logger.error("kill switch unreadable, no BUY (exits allowed): %s", message.error)
            return
        self._halt = HaltState(
            active=message.halted,
            reason=message.reason,
            by=message.by,
            at=message.at,
            exits=message.exits,
        )
        self._keep_halt()
        if message.halted:
            logger.warning("kill switch is on (set by %s: %s)", message.by, message.reason)
        self._update_trading_state()

    def _retry_halt_store(self) -> None:
        """Read the kill switch again, or store it again, after a failure."""
        if self._store_busy:
            return
        if self._halt.active is None:
            self._load_halt_state()
        elif not self._halt_persisted:
            self._persist_halt()

    def _keep_halt(self) -> None:
        keep_halt(self._kept, self._halt, persisted=self._halt_persisted)

    # --- helpers ----------------------------------------------------------------------

    def _snapshot(self) -> HealthSnapshot:
        now = self._clock.monotonic()
        return HealthSnapshot(
            trading=self._trading,
            trading_since=self._trading_since,
            dependencies=tuple(
                DependencySnapshot(
                    dependency=dependency,
                    status=tracked.status,
                    target=tracked.probe.target if tracked.probe is not None else None,
                    breaker=tracked.breaker.phase,
                    consecutive_failures=tracked.breaker.failures,
                    retry_in=tracked.breaker.seconds_until_trial(now),
                    last_probe_at=tracked.last_probe_at,
                    last_latency=tracked.last_latency,
                    last_error=tracked.last_error,
                    last_error_at=tracked.last_error_at,
                    probe_in_flight=tracked.in_flight is not None,
                )
                for dependency, tracked in self._tracked.items()
            ),
            halted=self._halt.active,
            halt_reason=self._halt.reason,
            halt_persisted=self._halt_persisted,
            halt_exits=self._halt.exits,
            intake_links=tuple(
                (link, up, error) for link, (up, error) in sorted(self._links.items())
            ),
        )
