"""Answers of the hottest read routes (/health, /status), produced by a thread of their
own so that a request costs no actor round trip.

Health checks and load balancers poll these routes hard. Produced on the request path,
every poll past the cache's lifetime asked the actors and held the other requests
behind it while the order path kept those actors busy; produced here, a request only
reads bytes, and the actors are asked a few times a second whatever the poll rate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.config.sections import ServiceConfig

__all__ = [
    "ASKS_PER_ANSWER",
    "Answer",
    "PublishedAnswers",
    "published_answers",
]

logger = logging.getLogger(__name__)

ASKS_PER_ANSWER = 2
"""Actor round trips, one after the other, that /health (the supervisor, then
ServiceHealth) and /status (ServiceHealth, then the LeaderElector) each make."""

Answer = tuple[int, bytes]
"""An HTTP status and its JSON body."""


@dataclass(frozen=True, slots=True)
class _Published:
    started: float
    """When its production began: what it shows is at least this recent."""
    answer: Answer
    """The status and body."""


class PublishedAnswers:
    """Each route's answer, produced again every ``interval`` seconds off the request
    path, and served while younger than ``lifetime`` (from the start of its production).

    ``lifetime`` is the most staleness a client may see: ``interval`` plus the longest
    a production may take (its actors' ask timeouts), so that an answer is replaced
    before it expires even when an actor takes its whole timeout. Past it (actors slow
    several times in a row, the thread stopped), or after ``invalidate``, ``get``
    answers None and the request produces its own answer, as without this.
    """

    def __init__(self, *, interval: float, lifetime: float, clock: Callable[[], float]) -> None:
        if not 0 < interval <= lifetime:
            raise ValueError(f"interval {interval!r} must be > 0 and <= lifetime {lifetime!r}")
        self._interval = interval
        self._lifetime = lifetime
        self._clock = clock
        self._producers: dict[str, Callable[[], Answer]] = {}
        self.keys: frozenset[str] = frozenset()
        """Every key an answer is published under (read at every plain GET: kept, not
        made again)."""
        self._answers: dict[str, _Published] = {}
        self._generation = 0
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def lifetime(self) -> float:
        return self._lifetime

    def add(self, key: str, produce: Callable[[], Answer]) -> None:
        """Publish ``produce``'s answer under ``key``; before ``start``."""
        self._producers[key] = produce
        self.keys = frozenset(self._producers)

    def get(self, key: str) -> Answer | None:
        """The answer under ``key`` if one younger than the lifetime is published."""
        published = self._answers.get(key)
        if published is None or self._clock() - published.started > self._lifetime:
            return None
        return published.answer

    def invalidate(self) -> None:
        """Drop every answer: after a command, reads must show its effect. A production
        begun before this is not published."""
        with self._guard:
            self._generation += 1
            self._answers = {}

    def refresh(self, key: str) -> None:
        """Produce the answer under ``key`` once, now."""
        with self._guard:
            generation = self._generation
        started = self._clock()
        try:
            answer = self._producers[key]()
        except Exception:
            # The old answer expires on its own; the requests then produce theirs.
            logger.exception("could not produce the answer of %s", key)
            return
        with self._guard:
            if generation == self._generation:
                self._answers = {**self._answers, key: _Published(started, answer)}

    def start(self) -> PublishedAnswers:
        # A thread per route: an actor that does not answer delays its routes only.
        for key in self._producers:
            thread = threading.Thread(
                target=self._run, args=(key,), name=f"http-published {key}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, key: str) -> None:
        while not self._stopping.is_set():
            due = self._clock() + self._interval
            self.refresh(key)
            # From one start to the next, and at once after a production slower than
            # the interval, so that it is replaced as soon as it can be.
            self._stopping.wait(max(0.0, min(self._interval, due - self._clock())))


def published_answers(
    settings: ServiceConfig, clock: Callable[[], float]
) -> PublishedAnswers | None:
    """The publisher of the service's settings: every HTTP_SNAPSHOT_TTL, answers at most
    that plus the asks' timeouts old; None when the TTL is 0 (nothing reused, each
    request produces its answer)."""
    if settings.snapshot_ttl <= 0:
        return None
    return PublishedAnswers(
        interval=settings.snapshot_ttl,
        lifetime=settings.snapshot_ttl + ASKS_PER_ANSWER * settings.ask_timeout,
        clock=clock,
    )
