"""Liveness of the supervisor's children: a Ping each tick, and a hung child replaced."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pykka

from coordinator.clock import Clock
from coordinator.config import SupervisorConfig
from coordinator.messages.supervision import FailureInfo, Ping
from coordinator.supervisor._tree import ChildState, TreeState, _Child, _stack_of
from coordinator.supervisor.directory import Directory

logger = logging.getLogger("coordinator.supervisor.supervisor")


class _Liveness:
    """The Supervisor's liveness checks, kept apart from its dispatch and restarts."""

    _state: TreeState
    _clock: Clock
    _config: SupervisorConfig
    _children: list[_Child]
    _directory: Directory
    _down: Callable[..., None]

    def _check_liveness(self) -> None:
        """A Ping may wait behind legitimate work (thousands of signals queued at a
        Validator): an unanswered Ping alone does not make a child hung. It is hung once
        its Ping has waited longer than the limit and it has begun no message for as
        long, i.e. it is stuck inside one."""
        if self._state not in (TreeState.STARTING, TreeState.RUNNING):
            return
        now = self._clock.monotonic()
        for child in self._children:
            if child.ref is None:
                continue
            if child.state is ChildState.STARTING:
                # Its readiness Ping may wait behind the messages kept for it meanwhile.
                quiet = _quiet_for(child, now)
                if quiet > self._config.start_timeout:
                    self._replace_hung(
                        child,
                        "StartTimeout",
                        f"no answer to its readiness Ping and no message handled for"
                        f" {quiet:.1f} s (limit {self._config.start_timeout:g} s)",
                    )
                continue
            if child.state is not ChildState.RUNNING:
                continue
            if child.ping is not None:
                future, sent = child.ping
                try:
                    future.get(timeout=0)
                    child.ping = None
                except pykka.Timeout:
                    quiet = min(now - sent, _quiet_for(child, now))
                    if quiet > self._config.liveness_timeout:
                        self._replace_hung(
                            child,
                            "Hung",
                            f"no answer to Ping for {now - sent:.1f} s and no message"
                            f" begun for {quiet:.1f} s (limit {self._config.liveness_timeout:g} s)",
                        )
                    continue
                except Exception:
                    child.ping = None  # it died; its own report follows
                    continue
            if child.ref is not None:
                _quiet_for(child, now)
                child.ping = (child.ref.ask(Ping(), block=False), now)

    def _replace_hung(self, child: _Child, error_type: str, error: str) -> None:
        name, incarnation = child.spec.name, child.incarnation
        logger.error(
            "%s#%d is hung: %s; replacing it. Its stack:\n%s",
            name,
            incarnation,
            error,
            _stack_of(child.context.thread if child.context else None),
        )
        self._retire(child)
        self._down(
            child,
            incarnation,
            failed=True,
            failure=FailureInfo(
                at=self._clock.time(), error_type=error_type, error=error, phase="liveness"
            ),
        )

    def _retire(self, child: _Child) -> None:
        """Cut off an incarnation that does not answer; it stops if it ever wakes up."""
        assert child.context is not None
        self._directory.withdraw(
            child.spec.name, child.incarnation, drain=True, first=child.context.retire()
        )
        if child.ref is not None and child.ref.is_alive():
            child.ref.stop(block=False)


def _quiet_for(child: _Child, now: float) -> float:
    """Seconds since ``child`` was last seen to begin a message (or started), as far as
    the checks, one per liveness tick, can tell."""
    progress = child.context.progress if child.context is not None else 0
    if progress != child.progress:
        child.progress, child.progress_at = progress, now
    return now - child.progress_at
