"""The signal wire format of the RootTrading Signal Aggregator, parsed without surprises.

``parse_signal`` takes whatever arrived (bytes, text, an already decoded object) and
returns either a ``Signal`` or an ``InvalidSignal`` listing every field error. It never
raises: bad input is an answer, not an exception.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from coordinator.trading import json_text
from coordinator.trading.symbols import is_symbol

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "RECORD_PREVIEW_BYTES",
    "FieldError",
    "InvalidSignal",
    "Side",
    "Signal",
    "SignalSource",
    "canonical_json",
    "parse_signal",
]

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The default limit (``MAX_SIGNAL_BYTES``): a consensus carries its constituent
signals, up to 100 of them in a wave, and passes 100 KB."""
RECORD_PREVIEW_BYTES = 64 * 1024
"""What is kept of a payload over the limit, for its record."""
_Fail = Callable[[str, str], None]
"""Notes a field's problem: (field, problem)."""
_STRENGTHS = ("very_weak", "weak", "moderate", "strong", "very_strong")
_INF = math.inf
# Epoch milliseconds between 2001 and 2286: a number outside is seconds or garbage.
_MIN_EPOCH_MS = 1_000_000_000_000
_MAX_EPOCH_MS = 9_999_999_999_999


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class SignalSource(StrEnum):
    """Where a signal came in, as stored (``coordinator_signals.source``) and published."""

    PUBSUB = "pubsub"
    STREAM = "stream"
    HTTP = "http"
    DATABASE = "database"
    """RootTrading's ``trading_signals`` table, read at start."""
    TRAILING_STOP = "trailing_stop"
    """A trailing stop's exit: not taken in again after a restart, counted apart."""
    UNKNOWN = "unknown"
    """Only in a ``SignalDecided`` whose signal's record the StoreWriter did not hold,
    and for a stored record naming a source this version does not know."""

    @classmethod
    def of_record(cls, value: str) -> SignalSource:
        """The source a stored record names (it is read back from the database)."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    """Dotted path of the field (``metadata.stop_price``), or ``payload``."""
    problem: str
    """What is wrong with it, for a person."""


@dataclass(frozen=True, slots=True)
class Signal:
    signal_id: str
    """``db:<db_id>``, else ``consensus:<consensus_id>``, else ``sha256:<canonical hash>``."""
    strategy: str
    symbol: str
    side: Side
    timestamp: float
    """When the aggregator emitted it, epoch seconds."""
    price: float
    confidence: float | None
    strength: str | None
    consensus_strength: float | None
    strategies_count: int | None
    avg_confidence: float | None
    signal_type: str | None
    """``metadata.type``."""
    db_id: str | None
    """Id of the row in ``trading_signals``, when the aggregator stored it."""
    consensus_id: str | None
    stop_price: float | None
    trailing_delta: float | None
    payload: str
    """The payload as canonical JSON (sorted keys), for storage."""


@dataclass(frozen=True, slots=True)
class InvalidSignal:
    signal_id: str
    """``db:<db_id>`` when its ``metadata.db_id`` is itself valid (the row it names),
    else ``raw:<sha256 of the bytes>``: the same garbage twice is a duplicate."""
    errors: tuple[FieldError, ...]
    payload: str
    """The payload as received (decoded leniently); one over the size limit is cut to
    its first ``RECORD_PREVIEW_BYTES``."""

    def describe(self) -> str:
        return "; ".join(f"{e.field}: {e.problem}" for e in self.errors)


# One encoder for every signal: json.dumps builds a new one per call when given options.
_CANONICAL = json_text.encoder_of(
    json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
)


def canonical_json(value: Any) -> str:
    return _CANONICAL(value)


def parse_signal(
    raw: Any, *, max_bytes: int = MAX_PAYLOAD_BYTES, total_bytes: int | None = None
) -> Signal | InvalidSignal:
    """Parse one signal; never raises. ``total_bytes``: the size of the whole payload
    when only its beginning was read (an HTTP body far over the limit)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        size = max(len(data), total_bytes or 0)
        if size > max_bytes:
            return _too_big(data, size, max_bytes)
        try:
            obj = json_text.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return _invalid(data, "payload", f"not valid JSON ({_short(exc)})")
    else:
        obj = raw
        try:
            data = canonical_json(obj).encode("utf-8", errors="surrogatepass")
        except (TypeError, ValueError, RecursionError) as exc:
            return _invalid(repr(obj).encode(), "payload", f"not JSON-serialisable ({_short(exc)})")
        if len(data) > max_bytes:
            return _too_big(data, len(data), max_bytes)
    if not isinstance(obj, dict):
        return _invalid(data, "payload", f"must be a JSON object, got {_json_type(obj)}")
    try:
        return _parse_object(obj, data)
    except RecursionError:
        return _invalid(data, "payload", "nested too deeply")


def _parse_object(obj: dict[str, Any], data: bytes) -> Signal | InvalidSignal:
    errors: list[FieldError] = []

    def fail(field: str, problem: str) -> None:
        errors.append(FieldError(field, problem))

    strategy = obj.get("strategy")
    if not isinstance(strategy, str) or not strategy.strip():
        fail("strategy", "required, a non-empty string")
    elif len(strategy) > 100:
        fail("strategy", "at most 100 characters")

    symbol = obj.get("symbol")
    if not isinstance(symbol, str):
        fail("symbol", "required, a string such as BTCUSDC")
    elif not is_symbol(symbol):
        fail("symbol", f"{_clip(symbol)!r} is not a Binance symbol (5 to 20 of A-Z, 0-9)")

    side = obj.get("side")
    if side not in ("BUY", "SELL"):
        fail("side", f"must be exactly BUY or SELL, got {_clip(side)!r}")

    timestamp = _timestamp(obj.get("timestamp"), fail)
    # The numbers as the aggregator writes them (a float in range, or null where it may
    # be) pass without a call of ``_number``, which decides every other case.
    price = obj.get("price")
    if not (type(price) is float and 0.0 < price < _INF):
        price = _number(price, "price", fail, required=True, positive=True)
    confidence = obj.get("confidence")
    if not (confidence is None or (type(confidence) is float and 0.0 <= confidence <= 1.0)):
        confidence = _number(confidence, "confidence", fail, low=0.0, high=1.0)

    strength = obj.get("strength")
    if strength is not None and strength not in _STRENGTHS:
        fail("strength", f"must be null or one of {', '.join(_STRENGTHS)}, got {_clip(strength)!r}")

    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        fail("metadata", f"must be an object or null, got {_json_type(metadata)}")
        metadata = {}

    consensus_strength = metadata.get("consensus_strength")
    if not (
        consensus_strength is None
        or (type(consensus_strength) is float and 0.0 <= consensus_strength < _INF)
    ):
        consensus_strength = _number(
            consensus_strength, "metadata.consensus_strength", fail, low=0.0
        )
    count_field = "strategies_count" if "strategies_count" in metadata else "strategy_count"
    strategies_count = _integer(metadata.get(count_field), f"metadata.{count_field}", fail)
    avg_confidence = metadata.get("avg_confidence")
    if not (
        avg_confidence is None or (type(avg_confidence) is float and 0.0 <= avg_confidence <= 1.0)
    ):
        avg_confidence = _number(avg_confidence, "metadata.avg_confidence", fail, low=0.0, high=1.0)
    signal_type = _text(metadata.get("type"), "metadata.type", fail)
    db_id = _identifier(metadata.get("db_id"), "metadata.db_id", fail)
    consensus_id = _identifier(metadata.get("consensus_id"), "metadata.consensus_id", fail)
    stop_price = metadata.get("stop_price")
    if stop_price is not None:
        stop_price = _number(stop_price, "metadata.stop_price", fail, positive=True)
    trailing_delta = metadata.get("trailing_delta")
    if trailing_delta is not None:
        trailing_delta = _number(trailing_delta, "metadata.trailing_delta", fail, positive=True)

    if errors:
        # One naming its row is known by it: its decision marks the row processed, so
        # a later read of the table does not take it in as a signal never decided.
        invalid_id = _raw_id(data) if db_id is None else f"db:{db_id}"
        return InvalidSignal(invalid_id, tuple(errors), _text_of(data))

    payload = canonical_json(obj)
    if db_id is not None:
        signal_id = f"db:{db_id}"
    elif consensus_id is not None:
        signal_id = f"consensus:{consensus_id}"
    else:
        signal_id = "sha256:" + hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
    assert timestamp is not None and price is not None and isinstance(side, str)
    return Signal(
        signal_id=signal_id,
        strategy=str(strategy),
        symbol=str(symbol),
        side=Side(side),
        timestamp=timestamp,
        price=price,
        confidence=confidence,
        strength=strength,
        consensus_strength=consensus_strength,
        strategies_count=strategies_count,
        avg_confidence=avg_confidence,
        signal_type=signal_type,
        db_id=db_id,
        consensus_id=consensus_id,
        stop_price=stop_price,
        trailing_delta=trailing_delta,
        payload=payload,
    )


def _timestamp(value: Any, fail: _Fail) -> float | None:
    if value is None:
        fail("timestamp", "required: an ISO-8601 string or epoch milliseconds")
        return None
    if isinstance(value, bool):
        fail("timestamp", "must be an ISO-8601 string or epoch milliseconds, got a boolean")
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:
            fail(
                "timestamp",
                f"{value!r} is not epoch milliseconds (expected 13 digits, such as 1700000000000)",
            )
            return None
        return float(value) / 1000.0
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            fail("timestamp", f"{_clip(value)!r} is not an ISO-8601 date-time")
            return None
        if moment.tzinfo is None:
            # The aggregator writes naive UTC (datetime.utcnow().isoformat()).
            moment = moment.replace(tzinfo=UTC)
        try:
            return moment.timestamp()
        except (OverflowError, OSError, ValueError):
            fail("timestamp", f"{_clip(value)!r} is out of range")
            return None
    fail("timestamp", f"must be an ISO-8601 string or epoch milliseconds, got {_json_type(value)}")
    return None


def _number(
    value: Any,
    field: str,
    fail: _Fail,
    *,
    required: bool = False,
    positive: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> float | None:
    if value is None:
        if required:
            fail(field, "required, a number")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(field, f"must be a number, got {_json_type(value)}")
        return None
    number = float(value)
    if not math.isfinite(number):
        fail(field, "must be finite")
        return None
    if positive and number <= 0:
        fail(field, f"must be > 0, got {value!r}")
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"from {low:g} to {high:g}" if high is not None else f">= {low:g}"
        fail(field, f"must be {bounds}, got {value!r}")
        return None
    return number


def _integer(value: Any, field: str, fail: _Fail) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(field, f"must be an integer, got {_json_type(value)}")
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        fail(field, f"must be an integer, got {value!r}")
        return None
    if value < 0 or value > 10_000:
        fail(field, f"must be from 0 to 10000, got {value!r}")
        return None
    return int(value)


def _text(value: Any, field: str, fail: _Fail) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        fail(field, f"must be a string, got {_json_type(value)}")
        return None
    return value[:100]


def _identifier(value: Any, field: str, fail: _Fail) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(field, f"must be an integer or a string, got {_json_type(value)}")
        return None
    text = str(value).strip()
    if not text or len(text) > 200:
        fail(field, "must be 1 to 200 characters")
        return None
    return text


def _invalid(data: bytes, field: str, problem: str) -> InvalidSignal:
    return InvalidSignal(_raw_id(data), (FieldError(field, problem),), _text_of(data))


def _too_big(data: bytes, size: int, max_bytes: int) -> InvalidSignal:
    problem = (
        f"{size} bytes is over the limit of {max_bytes} bytes (MAX_SIGNAL_BYTES); "
        f"the record keeps its first {min(size, RECORD_PREVIEW_BYTES)} bytes"
    )
    return InvalidSignal(
        _raw_id(data),
        (FieldError("payload", problem),),
        data[:RECORD_PREVIEW_BYTES].decode("utf-8", errors="replace"),
    )


def _raw_id(data: bytes) -> str:
    return "raw:" + hashlib.sha256(data).hexdigest()


def _text_of(data: bytes) -> str:
    # Within the size limit (checked first): kept whole, as it came.
    return data.decode("utf-8", errors="replace")


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "an object"
    return type(value).__name__


def _clip(value: Any, limit: int = 40) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
