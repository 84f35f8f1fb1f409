"""The short reading of small JSON messages gives json.loads's own answer: the same
value, or the same error, for any bytes or text."""

from __future__ import annotations

import json

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
