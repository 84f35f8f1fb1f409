"""The demo's progress line: the replay's position and the coordinator's counts, read
from its own API."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import requests

from coordinator.demo.feeder import DemoFeeder

__all__ = ["Progress", "progress_line"]


class Progress:
    """The progress line: the replay's position and the coordinator's counts, rewritten
    in place on a terminal, one line every ``every`` seconds otherwise."""

    def __init__(self, feeder: DemoFeeder, api: str, out: TextIO, *, every: float = 10.0) -> None:
        self._feeder = feeder
        self._api = api
        self._out = out
        self._terminal = out.isatty()
        self._every = 1.0 if self._terminal else every
        self._stop = threading.Event()
        self._said_finished = False
        self._thread = threading.Thread(target=self._run, name="demo-progress", daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._terminal:
            self._out.write("\n")
            self._out.flush()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(self._every):
            line = progress_line(self._feeder, self._counts(session))
            if self._terminal:
                self._out.write("\r\x1b[2K" + line)
            else:
                self._out.write(line + "\n")
            feed = self._feeder.counts
            if feed.finished and not self._said_finished:
                self._said_finished = True
                why = self._feeder.error or "end of the data"
                self._out.write(
                    f"\n{why}: the coordinator keeps running on the last prices "
                    f"({self._api}/); Ctrl-C to stop\n"
                )
            self._out.flush()
        session.close()

    def _counts(self, session: requests.Session) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for path in ("/stats", "/trailing-stops"):
            try:
                answer = session.get(self._api + path, timeout=2).json()
            except (requests.RequestException, ValueError):
                continue
            if isinstance(answer, dict):
                counts.update({f"{path}:{k}": v for k, v in answer.items()})
        return counts


def progress_line(feeder: DemoFeeder, api: Mapping[str, Any]) -> str:
    """One line: where the replay is, what it published, what the coordinator did."""
    feed = feeder.counts
    total = max(feeder.total_steps, 1)
    if feed.replaying_ms is None:
        where = f"history {feed.backlog} candles"
    else:
        moment = datetime.fromtimestamp(feed.replaying_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        where = f"replay {moment} ({100 * feed.step / total:.1f}%)"

    def shown(key: str) -> str:
        value = api.get(key)
        return "?" if value is None else str(value)

    return (
        f"{where} | candles {feed.candles} signals {feed.signals} | "
        f"orders {shown('/stats:orders_sent')} rejected {shown('/stats:signals_rejected')} | "
        f"positions {shown('/trailing-stops:count')} stops fired "
        f"{shown('/trailing-stops:exits_triggered')} | universe {shown('/stats:universe_size')}"
    )
