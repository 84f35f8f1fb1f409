"""RowReader: a JSON list of objects read as ``json.loads`` reads it, whatever the
objects hold, with an object the same as in the last answer not read again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.infra.json_rows import NotRows, RowReader

# Texts that look like the separators between objects, and what may break a split.
TRICKY = st.sampled_from(
    ["},{", "}, {", '"},{"', "\\", '"', "}", "{", "[{", "}]", ",", " ", "é", "\u2028", "\\u0000"]
)
TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=4)), max_size=4).map("".join)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
ROW = st.dictionaries(TEXT, VALUE, max_size=5)
ROWS = st.lists(ROW, max_size=6)
STYLE = st.sampled_from([{"separators": (",", ":")}, {}, {"ensure_ascii": False}, {"indent": 1}])


def written(rows: Any, style: dict[str, Any]) -> bytes:
    return json.dumps(rows, **style).encode()


def counting() -> tuple[RowReader[dict[str, Any]], list[dict[str, Any]]]:
    built: list[dict[str, Any]] = []

    def build(row: dict[str, Any]) -> dict[str, Any]:
        built.append(row)
        return row

    return RowReader(build), built


@settings(max_examples=300, deadline=None)
@given(answers=st.lists(st.tuples(ROWS, STYLE), min_size=1, max_size=4), keep=st.randoms())
def test_every_answer_is_read_as_json_loads_reads_it(answers, keep):
    """Answers in turn, each keeping some rows of the one before (byte for byte the
    same, when written alike): each read equals json.loads of its body."""
    reader, _ = counting()
    before: list[dict[str, Any]] = []
    for rows, style in answers:
        mixed = [r for r in before if keep.random() < 0.5] + rows
        keep.shuffle(mixed)
        body = written(mixed, style)
        assert reader.read(body) == json.loads(body)
        before = mixed


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=40),
        VALUE.map(lambda v: json.dumps(v).encode()),
        ROWS.map(lambda rows: json.dumps(rows).encode()[:-1]),
        ROWS.map(lambda rows: b" \x0c" + json.dumps(rows).encode()),
        ROWS.map(lambda rows: json.dumps(rows).encode() + b"]"),
        ROWS.map(lambda rows: json.dumps(rows).encode().replace(b"}, {", b"} , {", 1)),
        ROWS.map(lambda rows: json.dumps([rows]).encode()),
    )
)
def test_a_body_that_is_no_list_of_objects_is_refused_as_json_loads_decides(body):
    reader, _ = counting()
    try:
        expected: Any = json.loads(body)
    except ValueError:
        with pytest.raises(NotRows, match=r"^not JSON$"):
            reader.read(body)
        return
    if isinstance(expected, list) and all(isinstance(row, dict) for row in expected):
        assert reader.read(body) == expected
    else:
        with pytest.raises(NotRows, match=r"^expected a list of objects$"):
            reader.read(body)


def test_a_row_the_same_as_in_the_last_answer_is_not_read_again():
    reader, built = counting()
    rows = [{"asset": name, "free": 1.5} for name in ("USDC", "SOL", "BTC")]
    assert reader.read(written(rows, {"separators": (",", ":")})) == rows
    assert len(built) == 3

    rows[1] = {"asset": "SOL", "free": 2.5}
    assert reader.read(written(rows, {"separators": (",", ":")})) == rows
    assert built[3:] == [{"asset": "SOL", "free": 2.5}]
    # Only the last answer's rows are kept: SOL at 1.5 is read again.
    rows[1] = {"asset": "SOL", "free": 1.5}
    reader.read(written(rows, {"separators": (",", ":")}))
    assert built[4:] == [{"asset": "SOL", "free": 1.5}]


def test_rows_alike_in_one_answer_are_read_once_and_each_given():
    reader, built = counting()
    assert reader.read(b'[{"a":1},{"a":1},{"a":1}]') == [{"a": 1}] * 3
    assert built == [{"a": 1}]


def test_a_separator_inside_a_string_or_a_nested_list_reads_the_body_whole():
    """The split meets a piece that is no object on its own: the body is read whole,
    and its rows are what they are."""
    reader, built = counting()
    rows = [{"note": 'a"},{"b', "x": [{"y": 1}, {"z": 2}]}, {"note": "}, {"}]
    body = written(rows, {"separators": (",", ":")})
    assert reader.read(body) == rows
    assert reader.read(written(rows, {})) == rows
    assert len(built) == 4, "a body read whole keeps nothing for the next one"


def test_what_the_build_raises_reaches_the_caller_and_the_last_good_rows_are_kept():
    calls: list[dict[str, Any]] = []

    def build(row: dict[str, Any]) -> float:
        calls.append(row)
        return float(row["price"])

    reader = RowReader(build)
    good = b'[{"price":1},{"price":2}]'
    assert reader.read(good) == [1.0, 2.0]
    with pytest.raises(KeyError):
        reader.read(b'[{"price":1},{"cost":2}]')
    with pytest.raises(ValueError):
        reader.read(b'[{"price":"one"}]')
    calls.clear()
    assert reader.read(good) == [1.0, 2.0]
    assert calls == [], "the refused answers replaced nothing"


@pytest.mark.parametrize("body", [b"[]", b" [ ] ", b"\n[\r\n]\t"])
def test_an_empty_list_is_no_rows(body):
    reader, built = counting()
    assert reader.read(body) == [] and built == []


def test_the_same_answer_again_is_not_split_and_each_caller_gets_its_own_list():
    reader, built = counting()
    body = b'[{"a":1},{"a":2}]'
    first = reader.read(body)
    first.append({"a": 3})  # the caller's list: nothing kept changes
    assert reader.read(bytes(body)) == [{"a": 1}, {"a": 2}]
    assert len(built) == 2
    # Read whole (a separator inside a string) and then the same again: kept too.
    whole = b'[{"a":"},{"},{"a":2}]'
    assert reader.read(whole) == reader.read(whole) == [{"a": "},{"}, {"a": 2}]
    assert len(built) == 4
    with pytest.raises(NotRows):
        reader.read(b"[{")
    assert reader.read(whole) == [{"a": "},{"}, {"a": 2}] and len(built) == 4
