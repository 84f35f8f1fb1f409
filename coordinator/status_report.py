"""``coordinator status``: a running daemon's state, dependencies, positions and last
decisions, as tables for a terminal.

Rendering is pure (answers of the API in, text out) so that it is tested on its own; the
command only fetches the four answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["ROUTES", "render_status", "table"]

ROUTES = {
    "status": "/status",
    "health": "/health",
    "stops": "/trailing-stops",
    "decisions": "/decisions?limit=10",
}
"""What the report reads, by the name the renderer knows each answer under."""


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; ``-`` for a missing value."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def _state(status: Mapping[str, Any], health: Mapping[str, Any]) -> str:
    trading = status.get("trading") or {}
    switch = status.get("kill_switch") or {}
    lines = [
        f"trading   {trading.get('state', '?')}"
        f" (buys {'allowed' if trading.get('buys_allowed') else 'refused'},"
        f" sells {'allowed' if trading.get('sells_allowed') else 'refused'})",
        f"mode      {status.get('mode', '?')}   role {status.get('role', '?')}"
        f"   health {health.get('status', '?')}"
        f"   up {_cell(status.get('uptime'))} s   version {status.get('version', '?')}"
        f"   instance {status.get('instance', '?')} ({status.get('instances', '?')})",
    ]
    if switch.get("halted"):
        lines.append(f"halted    {switch.get('reason') or '(no reason given)'}")
    for reason in trading.get("reasons") or ():
        lines.append(f"reason    {reason.get('code', '?')}: {reason.get('detail', '')}")
    for problem in health.get("problems") or ():
        lines.append(f"problem   {problem}")
    return "\n".join(lines)


def _dependencies(status: Mapping[str, Any]) -> str:
    rows = [
        (name, d.get("status"), d.get("breaker"), d.get("target"))
        for name, d in (status.get("dependencies") or {}).items()
    ]
    return table(("dependency", "status", "breaker", "target"), rows)


def _actors(health: Mapping[str, Any]) -> str:
    rows = [
        (name, a.get("state"), a.get("incarnation"), a.get("restarts"))
        for name, a in (health.get("actors") or {}).items()
    ]
    return table(("actor", "state", "incarnation", "restarts"), rows)


def _positions(stops: Mapping[str, Any]) -> str:
    positions = stops.get("positions") or []
    if not positions:
        return "no open position watched"
    rows = [
        (
            p.get("symbol"),
            p.get("quantity"),
            p.get("entry_price"),
            p.get("last_price"),
            p.get("peak"),
            p.get("stop"),
            None
            if p.get("distance_to_stop_percent") is None
            else f"{p['distance_to_stop_percent']:.2f} %",
            p.get("state"),
            "stale" if p.get("stale") else "",
        )
        for p in positions
    ]
    headers = ("symbol", "quantity", "entry", "price", "peak", "stop", "to stop", "state", "")
    return table(headers, rows)


def _decisions(decisions: Mapping[str, Any]) -> str:
    rows = [
        (
            d.get("decided_at"),
            d.get("symbol"),
            d.get("side"),
            d.get("outcome"),
            d.get("reason"),
            d.get("signal_id"),
        )
        for d in decisions.get("decisions") or []
    ]
    if not rows:
        return "no decision yet"
    return table(("decided at", "symbol", "side", "outcome", "reason", "signal"), rows)


_SECTIONS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("Dependencies", "status", _dependencies),
    ("Actors", "health", _actors),
    ("Positions", "stops", _positions),
    ("Last decisions", "decisions", _decisions),
)


def render_status(url: str, answers: Mapping[str, Mapping[str, Any] | str]) -> str:
    """The report of the daemon at ``url`` from its answers (by the names of ``ROUTES``);
    an answer that is a string is the error that took its place, shown in its section."""
    status, health = answers.get("status"), answers.get("health")
    parts = [f"Coordinator at {url}"]
    if isinstance(status, Mapping) and isinstance(health, Mapping):
        parts.append(_state(status, health))
    else:
        problem = status if isinstance(status, str) else health
        parts.append(f"state unknown: {problem}")
    for title, name, render in _SECTIONS:
        answer = answers.get(name)
        body = render(answer) if isinstance(answer, Mapping) else f"unavailable: {answer}"
        parts.append(f"{title}\n{body}")
    return "\n\n".join(parts) + "\n"
