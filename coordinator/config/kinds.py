"""The kinds of value a setting takes: each parses a raw value (from the environment,
the TOML file or a flag) and says in words what it allows."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from coordinator.trading.rate_limit import Rate
from coordinator.trading.symbols import is_symbol

__all__ = [
    "STOP_RULES",
    "AnyPath",
    "Boolean",
    "Choice",
    "Integer",
    "Kind",
    "Ladder",
    "LogLevel",
    "Names",
    "Number",
    "Numbers",
    "Range",
    "RateLimit",
    "SymbolDecimals",
    "SymbolRules",
    "Symbols",
    "Text",
    "Url",
    "Weights",
]


def _listed(raw: Any) -> list[Any]:
    """A list or tuple's items, or the comma-separated parts of anything else."""
    return list(raw) if isinstance(raw, list | tuple) else str(raw).split(",")


def _pairs(raw: Any, separator: str) -> list[tuple[Any, Any]]:
    """``key<separator>value`` entries: a mapping's items, a list's pairs, or the
    comma-separated parts of anything else, empty ones skipped (ValueError for a part
    without ``separator``)."""
    if isinstance(raw, dict):
        return list(raw.items())
    if isinstance(raw, list | tuple):
        return [(k, v) for k, v in raw]
    pairs = []
    for part in _listed(raw):
        if not part.strip():
            continue
        key, found, value = part.partition(separator)
        if not found:
            raise ValueError
        pairs.append((key, value))
    return pairs


class Kind:
    if TYPE_CHECKING:
        # What a value may be, for messages: a class attribute or a property by kind.
        @property
        def allowed(self) -> str: ...
    else:
        allowed: str = ""
    accepts_empty: bool = False
    """Whether a set-but-empty value means something (else it counts as not set)."""

    def parse(self, raw: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int | None = None
    maximum: int | None = None

    @property
    def allowed(self) -> str:
        return _bounds_text("an integer", self.minimum, self.maximum)

    def parse(self, raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        value = int(str(raw).strip().replace("_", "")) if not isinstance(raw, int) else raw
        _check_bounds(value, self.minimum, self.maximum)
        return value


@dataclass(frozen=True)
class Number(Kind):
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # exclusive lower bound
    unit: str = ""

    @property
    def allowed(self) -> str:
        text = "a number" + (f" of {self.unit}" if self.unit else "")
        if self.above is not None:
            text += f" > {self.above:g}"
            if self.maximum is not None:
                text += f" and <= {self.maximum:g}"
            return text
        return _bounds_text(text, self.minimum, self.maximum)

    def parse(self, raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError
        value = float(str(raw).strip().replace("_", ""))
        if not math.isfinite(value):
            raise ValueError
        if self.above is not None and value <= self.above:
            raise ValueError
        _check_bounds(value, self.minimum, self.maximum)
        return value


class Boolean(Kind):
    allowed = "true or false (also 1/0, yes/no, on/off)"
    _TRUE = frozenset({"1", "true", "yes", "on"})
    _FALSE = frozenset({"0", "false", "no", "off"})

    def parse(self, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in self._TRUE:
            return True
        if text in self._FALSE:
            return False
        raise ValueError


@dataclass(frozen=True)
class Text(Kind):
    allowed: str = "a non-empty string"
    pattern: str | None = None

    def parse(self, raw: Any) -> str:
        text = str(raw).strip()
        if not text:
            raise ValueError
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError
        return text


class RateLimit(Kind):
    allowed = "a rate and a burst such as '10/s burst 20' (rate > 0, burst >= 1), or off"

    _FORM = re.compile(r"([0-9]*\.?[0-9]+)\s*/\s*s\s+burst\s+([0-9]+)", re.IGNORECASE)

    def parse(self, raw: Any) -> Rate | None:
        text = str(raw).strip()
        if text.lower() == "off":
            return None
        found = self._FORM.fullmatch(text)
        if found is None:
            raise ValueError
        return Rate(per_second=float(found[1]), burst=int(found[2]))


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in self.choices:
            raise ValueError
        return text


class LogLevel(Kind):
    """A level as Python's logging spells it, in any case (RootTrading's env writes
    DEBUG, INFO...), WARN and FATAL included."""

    allowed = "one of debug, info, warning, error, critical (any case; also warn, fatal)"
    _ALIASES = {"warn": "warning", "fatal": "critical"}
    _LEVELS = ("debug", "info", "warning", "error", "critical")

    def parse(self, raw: Any) -> str:
        text = str(raw).strip().lower()
        text = self._ALIASES.get(text, text)
        if text not in self._LEVELS:
            raise ValueError
        return text


@dataclass(frozen=True)
class Url(Kind):
    schemes: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "a URL with scheme " + " or ".join(f"{s}://" for s in self.schemes) + " and a host"

    def parse(self, raw: Any) -> str:
        text = str(raw).strip()
        parts = urlsplit(text)
        if parts.scheme not in self.schemes or not (parts.hostname or parts.path):
            raise ValueError
        if parts.scheme in ("http", "https") and not parts.hostname:
            raise ValueError
        return text.rstrip("/") if parts.scheme in ("http", "https") else text


@dataclass(frozen=True)
class Symbols(Kind):
    accepts_empty: bool = False
    """An empty value lists no symbol (RootTrading's services read an empty
    TRADING_SYMBOLS so) instead of standing for the default."""

    @property
    def allowed(self) -> str:
        text = "comma-separated or JSON-array Binance symbols such as BTCUSDC,ETHUSDC"
        return text + (", or empty for none" if self.accepts_empty else "")

    def parse(self, raw: Any) -> tuple[str, ...]:
        if isinstance(raw, list | tuple):
            items = [str(item) for item in raw]
            if not items and self.accepts_empty:
                return ()
        else:
            text = str(raw).strip()
            if not text and self.accepts_empty:
                return ()
            if text.startswith("["):
                loaded = json.loads(text)
                if not isinstance(loaded, list):
                    raise ValueError
                items = [str(item) for item in loaded]
            else:
                items = text.split(",")
        symbols = tuple(dict.fromkeys(item.strip().upper() for item in items if item.strip()))
        if not symbols and not items and self.accepts_empty:
            return ()
        if not symbols or not all(is_symbol(s) for s in symbols):
            raise ValueError
        return symbols


class Range(Kind):
    allowed = "two numbers low-high with 0 <= low < high, such as 0.02-0.15"

    def parse(self, raw: Any) -> tuple[float, float]:
        if isinstance(raw, list | tuple):
            parts = [str(p) for p in raw]
        else:
            parts = re.split(r"\s*[,;]\s*|(?<=\d)\s*-\s*(?=\d)", str(raw).strip())
        if len(parts) != 2:
            raise ValueError
        low, high = (float(p) for p in parts)
        if not (math.isfinite(low) and math.isfinite(high)) or not 0 <= low < high:
            raise ValueError
        return (low, high)


@dataclass(frozen=True)
class Numbers(Kind):
    count: int
    minimum: float
    maximum: float
    increasing: bool = False

    @property
    def allowed(self) -> str:
        order = " increasing" if self.increasing else ""
        return (
            f"{self.count} comma-separated{order} numbers from {self.minimum:g} to {self.maximum:g}"
        )

    def parse(self, raw: Any) -> tuple[float, ...]:
        values = tuple(float(str(p).strip()) for p in _listed(raw))
        if len(values) != self.count or not all(
            math.isfinite(v) and self.minimum <= v <= self.maximum for v in values
        ):
            raise ValueError
        if self.increasing and any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError
        return values


@dataclass(frozen=True)
class Names(Kind):
    """Comma-separated names, each one of ``choices``, none twice."""

    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "comma-separated names among " + ", ".join(self.choices)

    def parse(self, raw: Any) -> tuple[str, ...]:
        names = tuple(str(p).strip() for p in _listed(raw) if str(p).strip())
        if not names or len(set(names)) != len(names) or not set(names) <= set(self.choices):
            raise ValueError
        return names


@dataclass(frozen=True)
class Weights(Kind):
    """``name=number`` pairs, comma-separated, names among ``keys``, numbers >= 0."""

    keys: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "comma-separated name=weight pairs, names among " + ", ".join(self.keys)

    def parse(self, raw: Any) -> tuple[tuple[str, float], ...]:
        weights = {}
        for item in _pairs(raw, "="):
            key, value = (str(x).strip() for x in item)
            number = float(value)
            if key not in self.keys or not math.isfinite(number) or number < 0 or key in weights:
                raise ValueError
            weights[key] = number
        if not weights or sum(weights.values()) <= 0:
            raise ValueError
        return tuple(sorted(weights.items()))


STOP_RULES = ("stoploss", "percent", "atr", "ladder", "breakeven")


class Ladder(Kind):
    """``gain:lock`` steps in percent, comma-separated, gains increasing, lock < gain."""

    allowed = "comma-separated gain:lock percent steps, gains increasing, each lock below its gain, such as 2:0.5,4:2"

    def parse(self, raw: Any) -> tuple[tuple[float, float], ...]:
        if isinstance(raw, list | tuple):
            pairs = [tuple(float(x) for x in item) for item in raw]
        else:
            pairs = [
                tuple(float(x) for x in part.split(":"))
                for part in str(raw).split(",")
                if part.strip()
            ]
        previous = 0.0
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError
            gain, lock = pair
            if not (math.isfinite(gain) and math.isfinite(lock)):
                raise ValueError
            if gain <= previous or not 0 <= lock < gain:
                raise ValueError
            previous = gain
        return tuple((gain, lock) for gain, lock in pairs)


class SymbolRules(Kind):
    """``SYMBOL=rule+rule`` entries, comma-separated; each rule set includes stoploss."""

    allowed = (
        "comma-separated SYMBOL=rule+rule entries, rules among "
        + ", ".join(STOP_RULES)
        + ", each set with stoploss, such as BTCUSDC=stoploss+atr"
    )

    def parse(self, raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        items = _pairs(raw, "=")
        if not isinstance(raw, list | tuple):
            # Written out, a symbol's rules are joined by "+".
            items = [(k, v if isinstance(v, list | tuple) else str(v).split("+")) for k, v in items]
        out = {}
        for symbol, rules in items:
            name = str(symbol).strip().upper()
            names = tuple(str(r).strip() for r in rules if str(r).strip())
            if not is_symbol(name) or name in out:
                raise ValueError
            if not names or len(set(names)) != len(names) or not set(names) <= set(STOP_RULES):
                raise ValueError
            if "stoploss" not in names:
                raise ValueError
            out[name] = names
        return tuple(sorted(out.items()))


class SymbolDecimals(Kind):
    """``SYMBOL:decimals`` entries, comma-separated."""

    allowed = (
        "comma-separated SYMBOL:decimals entries, decimals from 0 to 8, such as BTCUSDC:5,SOLUSDC:3"
    )

    def parse(self, raw: Any) -> tuple[tuple[str, int], ...]:
        out: dict[str, int] = {}
        for symbol, decimals in _pairs(raw, ":"):
            name = str(symbol).strip().upper()
            if not is_symbol(name) or name in out:
                raise ValueError
            if isinstance(decimals, bool) or not re.fullmatch(r"[0-8]", str(decimals).strip()):
                raise ValueError
            out[name] = int(str(decimals).strip())
        return tuple(sorted(out.items()))


class AnyPath(Kind):
    allowed = "a file-system path"

    def parse(self, raw: Any) -> Path:
        text = str(raw).strip()
        if not text:
            raise ValueError
        return Path(text).expanduser()


def _bounds_text(what: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    if low is not None:
        return f"{what} >= {low:g}"
    if high is not None:
        return f"{what} <= {high:g}"
    return what


def _check_bounds(value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError
