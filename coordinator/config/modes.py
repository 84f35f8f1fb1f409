"""What the settings mean together: paper or live, the Trader's and Portfolio's
addresses, the universe's candidates, and what the reservations must outlive.

RootTrading's compose file sets neither ``TRADER_API_URL`` nor ``PORTFOLIO_API_URL``
(its coordinator defaulted them to its own services), and its example env leaves
``TRADING_SYMBOLS`` to the operator. A coordinator swapped in under it must trade at
the real Trader, not on paper: paper runs only when asked, or when nothing at all is
configured (everything embedded, as ``make run`` starts it).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.config.identity import default_instance

__all__ = [
    "ROOTTRADING_PORTFOLIO_URL",
    "ROOTTRADING_TRADER_URL",
    "Note",
    "held_reservation_seconds",
    "resolve_environment",
]

ROOTTRADING_TRADER_URL = "http://trader:5002"
"""Where RootTrading's compose runs its Trader (its coordinator's default)."""
ROOTTRADING_PORTFOLIO_URL = "http://portfolio:8000"
"""Where RootTrading's compose runs its Portfolio (its coordinator's default)."""

_CONFIGURED = (
    "REDIS_URL",
    "REDIS_HOST",
    "DATABASE_URL",
    "PGHOST",
    "TRADER_API_URL",
    "PORTFOLIO_API_URL",
)
"""Any of these set means a deployment, not the all-embedded default."""


@dataclass(frozen=True, slots=True)
class Note:
    """A line for the start-up log about the configuration."""

    level: int
    """A ``logging`` level."""
    text: str


def held_reservation_seconds(connect_timeout: float, read_timeout: float) -> float:
    """The longest a reservation may stay held for an order answered 5xx: the intent
    claim and the answer, then the reconciler's window after the send, then the time its
    Validator waits past that window before it decides the signal unknown."""
    from coordinator.actors.held_orders import _GIVE_UP_AFTER as GIVE_UP_AFTER

    return connect_timeout + read_timeout + 5.0 + _window_after(read_timeout) + GIVE_UP_AFTER


def resolve_environment(
    values: MutableMapping[str, Any],
    raw: Mapping[str, tuple[Any, str]],
    derived: MutableMapping[str, str],
    notes: list[Note],
) -> list[str]:
    """Settle the values that depend on others (in ``values``, their sources in
    ``derived``), add the start-up ``notes``, and return the errors."""
    errors: list[str] = []
    given_urls = [n for n in ("TRADER_API_URL", "PORTFOLIO_API_URL") if values[n] is not None]
    asked = values["PAPER_TRADING"]
    if asked is True and given_urls:
        errors.append(
            "PAPER_TRADING=true ({}) and {} are both set: expected one of them; paper "
            "orders go to the in-process paper exchange and never to a Trader, so unset "
            "PAPER_TRADING (or --paper) to trade at {}, or unset {} to trade on paper".format(
                raw["PAPER_TRADING"][1] if "PAPER_TRADING" in raw else "default",
                " and ".join(f"{n}={values[n]} ({raw[n][1]})" for n in given_urls),
                " and ".join(given_urls),
                " and ".join(given_urls),
            )
        )
        return errors
    if asked is None:
        embedded = not any(values[n] is not None for n in _CONFIGURED)
        values["PAPER_TRADING"] = embedded
        derived["PAPER_TRADING"] = (
            "derived: nothing configured, everything embedded"
            if embedded
            else "derived: Redis, PostgreSQL or a service URL configured"
        )
    if not values["PAPER_TRADING"]:
        for name, default in (
            ("TRADER_API_URL", ROOTTRADING_TRADER_URL),
            ("PORTFOLIO_API_URL", ROOTTRADING_PORTFOLIO_URL),
        ):
            if values[name] is None:
                values[name] = default
                derived[name] = "default: RootTrading's service"
                notes.append(
                    Note(
                        logging.INFO,
                        f"{name} not set: using RootTrading's default {default} "
                        "(set PAPER_TRADING=true to trade on paper instead)",
                    )
                )
    _symbols(values, raw, derived, notes)
    _identity(values, derived)
    held = held_reservation_seconds(values["TRADER_CONNECT_TIMEOUT"], values["TRADER_READ_TIMEOUT"])
    if values["RESERVATION_LIFETIME"] <= held:
        notes.append(
            Note(
                logging.WARNING,
                f"RESERVATION_LIFETIME={values['RESERVATION_LIFETIME']:g} s is shorter than an "
                f"order held after a 5xx answer may wait ({held:g} s with "
                f"TRADER_CONNECT_TIMEOUT={values['TRADER_CONNECT_TIMEOUT']:g} and "
                f"TRADER_READ_TIMEOUT={values['TRADER_READ_TIMEOUT']:g}): its reservation may "
                "be released while the order is still looked for, and its room taken again",
            )
        )
    # After a restart a held order's room is the copy of it laid from the store, kept
    # FILL_SETTLE_WINDOW at most: it must last until the order is sent again or ruled out.
    restored = max(held, values["SIGNAL_TIMEOUT"] + _window_after(values["TRADER_READ_TIMEOUT"]))
    if values["FILL_SETTLE_WINDOW"] <= restored:
        notes.append(
            Note(
                logging.WARNING,
                f"FILL_SETTLE_WINDOW={values['FILL_SETTLE_WINDOW']:g} s is shorter than an "
                f"order held when the process stopped may wait to be sent again or ruled out "
                f"after a restart ({restored:g} s with SIGNAL_TIMEOUT="
                f"{values['SIGNAL_TIMEOUT']:g} and TRADER_READ_TIMEOUT="
                f"{values['TRADER_READ_TIMEOUT']:g}): its copy laid over the Portfolio's view "
                "may end first, and its room be taken again",
            )
        )
    return errors


def _window_after(read_timeout: float) -> float:
    from coordinator.actors.reconciler import match_policy

    return match_policy(read_timeout).window_after


def _identity(values: MutableMapping[str, Any], derived: MutableMapping[str, str]) -> None:
    """The instance, unless set, is named after the host and the data directory; the
    stream consumer, unless set, is the instance."""
    if values["COORDINATOR_INSTANCE"] is None:
        data_dir = Path(values["COORDINATOR_DATA_DIR"]).resolve()
        values["COORDINATOR_INSTANCE"] = default_instance(socket.gethostname(), data_dir)
        derived["COORDINATOR_INSTANCE"] = f"derived: host name and data directory {data_dir}"
    if values["SIGNALS_STREAM_CONSUMER"] is None:
        values["SIGNALS_STREAM_CONSUMER"] = values["COORDINATOR_INSTANCE"]
        derived["SIGNALS_STREAM_CONSUMER"] = "derived: COORDINATOR_INSTANCE"
    if values["SIGNALS_PARTITION_STREAM"] is None:
        values["SIGNALS_PARTITION_STREAM"] = f"{values['SIGNALS_STREAM']}:partition:"
        derived["SIGNALS_PARTITION_STREAM"] = "derived: SIGNALS_STREAM"


def _symbols(
    values: MutableMapping[str, Any],
    raw: Mapping[str, tuple[Any, str]],
    derived: MutableMapping[str, str],
    notes: list[Note],
) -> None:
    """An empty TRADING_SYMBOLS lists none: the candidates come from elsewhere."""
    if values["TRADING_SYMBOLS"]:
        return
    if "UNIVERSE_CANDIDATES" not in raw:
        values["UNIVERSE_CANDIDATES"] = "data"
        derived["UNIVERSE_CANDIDATES"] = "derived: TRADING_SYMBOLS is empty"
        notes.append(
            Note(
                logging.INFO,
                "TRADING_SYMBOLS is empty: the universe's candidates are every symbol with "
                "market data (UNIVERSE_CANDIDATES=data)",
            )
        )
    elif values["UNIVERSE_CANDIDATES"] == "config":
        notes.append(
            Note(
                logging.WARNING,
                "TRADING_SYMBOLS is empty and UNIVERSE_CANDIDATES=config: no candidate; the "
                "universe holds only CORE_PAIRS ({}); set TRADING_SYMBOLS, or "
                "UNIVERSE_CANDIDATES=data or redis".format(",".join(values["CORE_PAIRS"])),
            )
        )
