"""The short reading of small JSON messages gives json.loads's own answer: the same
value, or the same error, for any bytes or text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.trading import json_text

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)
_ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
_PADDING = st.sampled_from(["", " ", "\n", "\t ", "x", "{}", "\ufeff"])


def _outcome(read: object, payload: bytes | str) -> str:
    try:
        return "value " + repr(read(payload))  # type: ignore[operator]
    except (ValueError, RecursionError) as exc:
        return f"error {type(exc).__name__}: {exc}"


@settings(max_examples=400, deadline=None)
@given(_VALUES, _ENCODINGS, _PADDING, _PADDING, st.booleans())
def test_a_json_document_reads_as_json_loads_reads_it(
    value: object, encoding: str, before: str, after: str, as_text: bool
) -> None:
    text = before + json.dumps(value, ensure_ascii=False) + after
    payload: bytes | str = text if as_text else text.encode(encoding, "surrogatepass")
    assert _outcome(json_text.loads, payload) == _outcome(json.loads, payload)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=24) | st.text(max_size=24))
def test_any_bytes_or_text_read_as_json_loads_reads_them(payload: bytes | str) -> None:
    assert _outcome(json_text.loads, payload) == _outcome(json.loads, payload)


def test_a_lone_surrogate_is_read_as_json_loads_reads_it() -> None:
    payload = b'{"symbol": "\xed\xa0\x80"}'
    assert json_text.loads(payload) == json.loads(payload) == {"symbol": "\ud800"}


def _encoded(encode: object, value: object) -> str:
    try:
        return "text " + encode(value)  # type: ignore[operator]
    except (ValueError, TypeError) as exc:
        return f"error {type(exc).__name__}: {exc}"


_ENCODERS = st.builds(
    json.JSONEncoder,
    sort_keys=st.booleans(),
    ensure_ascii=st.booleans(),
    allow_nan=st.booleans(),
    separators=st.sampled_from([None, (",", ":"), (", ", ": ")]),
    default=st.sampled_from([None, str]),
)
_ENCODABLE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.builds(object)
    | st.tuples(st.integers()),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers() | st.floats(), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=600, deadline=None)
@given(_ENCODERS, _ENCODABLE)
def test_an_encoder_built_once_writes_what_json_encoder_writes(
    options: json.JSONEncoder, value: object
) -> None:
    # The same text, or the same error: a NaN refused, an object without JSON refused
    # or written with ``default``, keys of any kind, sorted or not.
    assert _encoded(json_text.encoder_of(options), value) == _encoded(options.encode, value)


def test_an_encoder_is_built_once_and_kept() -> None:
    # The point of it: a second value does not pay for a second encoder. Seen here as
    # the same text for a value after one refused (no state left over from the error).
    encode = json_text.encoder_of(json.JSONEncoder(allow_nan=False))
    with pytest.raises(ValueError, match="Out of range float"):
        encode({"a": [float("nan")]})
    assert encode({"a": [1.5]}) == '{"a": [1.5]}'


def test_an_indented_encoder_is_the_encoder_itself() -> None:
    options = json.JSONEncoder(indent=2)
    assert json_text.encoder_of(options) == options.encode
