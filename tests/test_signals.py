"""Parsing the aggregator's signals: every accepted form, every refusal named, never a crash."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.signals import (
    RECORD_PREVIEW_BYTES,
    InvalidSignal,
    Side,
    Signal,
    parse_signal,
)
from tests.pipeline import signal_payload


def parsed(payload: object) -> Signal:
    result = parse_signal(json.dumps(payload))
    assert isinstance(result, Signal), result
    return result


def test_the_aggregator_shape_with_every_metadata_key():
    payload = signal_payload("BTCUSDC", "SELL", price=64_000.0, consensus_id="abc")
    payload["metadata"]["db_id"] = 4711
    signal = parsed(payload)
    assert signal.signal_id == "db:4711"
    assert signal.side is Side.SELL
    assert signal.price == 64_000.0
    assert signal.consensus_strength == 0.91
    assert signal.strategies_count == 5
    assert signal.avg_confidence == 0.78
    assert signal.signal_type == "CONSENSUS"
    assert signal.consensus_id == "abc"
    assert signal.stop_price == pytest.approx(64_000 * 0.97)
    assert signal.trailing_delta == 1.5
    assert json.loads(signal.payload) == payload


def test_id_is_db_id_else_consensus_id_else_a_hash_of_the_canonical_payload():
    payload = signal_payload(consensus_id="c-1")
    assert parsed(payload).signal_id == "consensus:c-1"
    del payload["metadata"]["consensus_id"]
    hashed = parsed(payload).signal_id
    assert hashed.startswith("sha256:")
    reordered = dict(reversed(list(payload.items())))
    assert parsed(reordered).signal_id == hashed


@pytest.mark.parametrize(
    "timestamp",
    [
        1_800_000_000_000,
        1_800_000_000_000.5,
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00+00:00",
        "2027-01-15T09:00:00+01:00",
        "2027-01-15T08:00:00",
        "2027-01-15T08:00:00.123456",
    ],
)
def test_timestamps_iso_or_epoch_milliseconds(timestamp):
    signal = parsed({**signal_payload(), "timestamp": timestamp})
    assert 1_700_000_000 < signal.timestamp < 1_900_000_000


def test_naive_and_utc_iso_are_the_same_moment():
    a = parsed({**signal_payload(), "timestamp": "2027-01-15T08:00:00"}).timestamp
    b = parsed({**signal_payload(), "timestamp": "2027-01-15T09:00:00+01:00"}).timestamp
    assert a == b


def test_strategy_count_is_the_fallback_of_strategies_count():
    payload = signal_payload()
    del payload["metadata"]["strategies_count"]
    payload["metadata"]["strategy_count"] = 7
    assert parsed(payload).strategies_count == 7


def test_unknown_keys_and_null_optionals_are_fine():
    payload = {**signal_payload(), "future_field": {"x": 1}, "confidence": None, "strength": None}
    payload["metadata"] = None
    signal = parsed(payload)
    assert signal.confidence is None and signal.consensus_id is None


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"side": "Buy"}, "side", "exactly BUY or SELL"),
        ({"symbol": "BTC-USDC"}, "symbol", "not a Binance symbol"),
        ({"price": float("inf")}, "price", "must be finite"),
        ({"price": -3}, "price", "> 0"),
        ({"price": True}, "price", "a boolean"),
        ({"timestamp": 1_800_000_000}, "timestamp", "not epoch milliseconds"),
        ({"timestamp": "15/01/2027"}, "timestamp", "not an ISO-8601"),
        ({"timestamp": None}, "timestamp", "required"),
        ({"strategy": ""}, "strategy", "required"),
        ({"confidence": -0.1}, "confidence", "from 0 to 1"),
        ({"strength": "mega"}, "strength", "very_weak"),
        ({"metadata": "x"}, "metadata", "an object or null"),
    ],
)
def test_each_field_error_is_named(change, field, words):
    result = parse_signal(json.dumps({**signal_payload(), **change}))
    assert isinstance(result, InvalidSignal)
    problems = {e.field: e.problem for e in result.errors}
    assert field in problems and words in problems[field]


def test_metadata_errors_are_named_by_path():
    payload = signal_payload()
    payload["metadata"].update(stop_price=0, strategies_count=2.5, db_id=[1])
    result = parse_signal(json.dumps(payload))
    assert isinstance(result, InvalidSignal)
    assert {e.field for e in result.errors} == {
        "metadata.stop_price",
        "metadata.strategies_count",
        "metadata.db_id",
    }


def test_an_invalid_signal_naming_its_row_is_known_by_the_row_id():
    """So that its decision marks the row processed, and a later read of the table
    does not take the row in as a signal never decided. A ``db_id`` that is itself
    wrong names nothing: the bytes' hash."""
    payload = {**signal_payload(), "price": 0}
    payload["metadata"]["db_id"] = 42
    named = parse_signal(json.dumps(payload))
    assert isinstance(named, InvalidSignal)
    assert named.signal_id == "db:42"
    payload["metadata"]["db_id"] = [42]
    data = json.dumps(payload).encode()
    unnamed = parse_signal(data)
    assert isinstance(unnamed, InvalidSignal)
    assert unnamed.signal_id == "raw:" + hashlib.sha256(data).hexdigest()


def test_every_error_at_once():
    result = parse_signal(b"{}")
    assert isinstance(result, InvalidSignal)
    assert {e.field for e in result.errors} == {"strategy", "symbol", "side", "timestamp", "price"}


def test_size_limit_and_non_objects():
    big = json.dumps({**signal_payload(), "pad": "x" * 70_000}).encode()
    assert isinstance(parse_signal(big), Signal), "a consensus of 70 KB is no longer refused"
    refused = parse_signal(big, max_bytes=65_536)
    assert isinstance(refused, InvalidSignal)
    assert refused.errors[0].problem.startswith(
        f"{len(big)} bytes is over the limit of 65536 bytes (MAX_SIGNAL_BYTES)"
    )
    assert len(refused.payload) == RECORD_PREVIEW_BYTES, "the record keeps its beginning"
    declared = parse_signal(big[:2000], max_bytes=1999, total_bytes=len(big))
    assert isinstance(declared, InvalidSignal)
    assert f"{len(big)} bytes is over the limit of 1999" in declared.errors[0].problem
    wrong_side = json.dumps({**signal_payload(), "side": "HOLD", "pad": "x" * 100_000}).encode()
    invalid = parse_signal(wrong_side)
    assert isinstance(invalid, InvalidSignal)
    assert invalid.payload == wrong_side.decode(), "within the limit, the record keeps it whole"
    assert "got an array" in parse_signal(b"[]").errors[0].problem
    assert "not valid JSON" in parse_signal(b"{").errors[0].problem
    assert parse_signal(b"\xff").signal_id == parse_signal(b"\xff").signal_id


@given(st.binary(max_size=300))
def test_any_bytes_are_an_answer(data):
    assert isinstance(parse_signal(data), Signal | InvalidSignal)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_is_an_answer(value):
    result = parse_signal(value)
    assert isinstance(result, Signal | InvalidSignal)
    if isinstance(result, InvalidSignal):
        assert result.errors and all(e.problem for e in result.errors)


@given(
    st.fixed_dictionaries(
        {
            "strategy": st.text(min_size=1, max_size=20).filter(str.strip),
            "symbol": st.from_regex(r"[A-Z0-9]{5,20}", fullmatch=True),
            "side": st.sampled_from(["BUY", "SELL"]),
            "timestamp": st.integers(1_000_000_000_000, 9_999_999_999_999),
            "price": st.floats(min_value=1e-8, max_value=1e9),
        }
    )
)
def test_every_well_formed_signal_parses(payload):
    assert isinstance(parse_signal(json.dumps(payload)), Signal)


# Each number field: where it sits, the Signal's attribute, and ``_number``'s bounds.
_NUMBERS = [
    (("price",), "price", {"required": True, "positive": True}),
    (("confidence",), "confidence", {"low": 0.0, "high": 1.0}),
    (("metadata", "consensus_strength"), "consensus_strength", {"low": 0.0}),
    (("metadata", "avg_confidence"), "avg_confidence", {"low": 0.0, "high": 1.0}),
    (("metadata", "stop_price"), "stop_price", {"positive": True}),
    (("metadata", "trailing_delta"), "trailing_delta", {"positive": True}),
]
_ODD_NUMBERS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats()
    | st.sampled_from([0.0, -0.0, 1.0, 1.0000001, 5e-324, float("inf"), float("nan")])
    | st.text(max_size=4)
)


@given(st.sampled_from(_NUMBERS), _ODD_NUMBERS)
def test_a_number_field_is_read_as_its_own_check_reads_it(number, value):
    # The usual floats skip the check's call: whatever the value, the outcome is the
    # check's own, the same number or the same refusal.
    from coordinator.trading.signals import _number

    path, attribute, bounds = number
    payload = signal_payload("BTCUSDC", "BUY", price=64_000.0, consensus_id="n")
    if path[0] == "metadata":
        payload["metadata"][path[1]] = value
    else:
        payload[path[0]] = value
    problems: list[tuple[str, str]] = []
    field = ".".join(path)
    expected = _number(value, field, lambda f, p: problems.append((f, p)), **bounds)
    result = parse_signal(json.dumps(payload, allow_nan=True))
    if problems:
        assert isinstance(result, InvalidSignal)
        assert [(e.field, e.problem) for e in result.errors if e.field == field] == problems
    else:
        assert isinstance(result, Signal), result
        actual = getattr(result, attribute)
        assert actual == expected and type(actual) is type(expected)
