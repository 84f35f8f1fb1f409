"""The endpoint decorator's side of the audit trail, on a small app served over real
HTTP: what it records of a call, bounded, and what it never records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import bottle
import pytest
import requests
from bottle import response
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.http.audit import MAX_AUDIT_BYTES, body_fields, bounded_result, read_size
from coordinator.http.endpoints import Endpoints, json_body, json_error
from coordinator.http.server import HttpServer

TOKEN = "a-token-of-sixteen-or-more"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    recorded: list[dict[str, Any]] = []
    app = bottle.Bottle(catchall=True, autojson=True)
    app.default_error_handler = json_error  # type: ignore[method-assign]
    endpoint = Endpoints(
        app,
        api_token=TOKEN,
        snapshot_ttl=0.0,
        clock=lambda: 0.0,
        audit=lambda **fields: recorded.append(fields),
    )

    def accepted() -> dict[str, Any]:
        response.status = 202
        return {"echo": json_body()}

    def broken() -> dict[str, Any]:
        raise RuntimeError("a bug")

    endpoint("POST", "/command", token=True)(accepted)
    endpoint("POST", "/broken", token=True)(broken)
    endpoint("POST", "/large", token=True)(lambda: {"state": "ok", "rows": list(range(5000))})
    endpoint("POST", "/unaudited", token=True, audited=False)(lambda: {"done": True})
    endpoint("GET", "/read")(lambda: {"read": True})
    server = HttpServer(app, host="127.0.0.1", port=0, threads=2).start()
    try:
        yield server.url, recorded
    finally:
        server.stop()


def test_a_command_is_recorded_with_its_status_body_and_answer(served) -> None:
    url, recorded = served
    answer = requests.post(url + "/command?x=1", json={"a": [1, 2]}, headers=AUTH, timeout=5)
    assert answer.status_code == 202
    assert recorded == [
        {
            "client": "127.0.0.1",
            "token_fingerprint": hashlib.sha256(TOKEN.encode()).hexdigest()[:12],
            "method": "POST",
            "path": "/command?x=1",
            "body": {"a": [1, 2]},
            "body_text": None,
            "status": 202,
            "result": {"echo": {"a": [1, 2]}},
        }
    ]


def test_reads_and_unaudited_commands_are_not_recorded(served) -> None:
    url, recorded = served
    assert requests.get(url + "/read", timeout=5).status_code == 200
    assert requests.post(url + "/unaudited", headers=AUTH, timeout=5).status_code == 200
    assert recorded == []


def test_a_call_without_a_token_is_recorded_without_a_fingerprint(served) -> None:
    url, recorded = served
    assert requests.post(url + "/command", json={}, timeout=5).status_code == 401
    [entry] = recorded
    assert entry["token_fingerprint"] is None and entry["status"] == 401
    assert "bearer token" in entry["result"]["error"]


def test_an_unexpected_error_is_recorded_as_a_500(served) -> None:
    url, recorded = served
    assert requests.post(url + "/broken", headers=AUTH, timeout=5).status_code == 500
    [entry] = recorded
    assert entry["status"] == 500 and "RuntimeError" in entry["result"]["error"]


def test_a_large_body_and_a_large_answer_are_kept_bounded(served) -> None:
    url, recorded = served
    large = '{"k": "' + "x" * (2 * MAX_AUDIT_BYTES) + '"}'
    requests.post(url + "/command", data=large, headers=AUTH, timeout=5)
    requests.post(url + "/large", headers=AUTH, timeout=5)
    body_entry, answer_entry = recorded
    assert body_entry["body"] is None
    assert body_entry["body_text"] == large[:MAX_AUDIT_BYTES]
    assert answer_entry["result"]["truncated"] is True
    assert answer_entry["result"]["summary"] == {"state": "ok", "rows": {"items": 5000}}


def test_the_token_is_hidden_wherever_it_is_quoted(served) -> None:
    url, recorded = served
    requests.post(
        url + f"/command?t={TOKEN}", json={"note": f"it is {TOKEN}"}, headers=AUTH, timeout=5
    )
    [entry] = recorded
    assert TOKEN not in repr(entry)
    assert entry["path"] == "/command?t=[token]"
    assert entry["body"] == {"note": "it is [token]"}
    assert entry["result"] == {"echo": {"note": "it is [token]"}}


# --- the token never kept, whatever surrounds it ------------------------------------------

tokens = st.text(min_size=8, max_size=40).filter(lambda t: t.strip() == t and t)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_of(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_of(v)]
    return []


def planted(value: Any, token: str, where: int) -> Any:
    """``value`` with the token put into its strings and keys, around what is there."""
    if isinstance(value, str):
        cut = where % (len(value) + 1)
        return value[:cut] + token + value[cut:]
    if isinstance(value, dict):
        return {planted(k, token, where): planted(v, token, where) for k, v in value.items()}
    if isinstance(value, list):
        return [planted(v, token, where) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(token=tokens, value=json_values, where=st.integers(0, 50), other=st.text(max_size=20))
def test_no_string_kept_of_a_body_or_an_answer_holds_the_token(token, value, where, other):
    value = planted({"note": other, "value": value}, token, where)
    secrets = (token, None)
    raw = json.dumps(value).encode()
    body, body_text = body_fields(raw[: read_size(secrets)], secrets)
    kept = [*strings_of(body), *([] if body_text is None else [body_text])]
    kept += strings_of(bounded_result(value, secrets))
    assert not [s for s in kept if token in s]


@settings(max_examples=300, deadline=None)
@given(
    token=tokens,
    before=st.integers(0, 2 * MAX_AUDIT_BYTES),
    filler=st.sampled_from(["x", "é", "\u20ac", "[token]"]),
)
def test_a_token_across_the_size_limit_leaves_no_part_of_itself(token, before, filler):
    raw = (filler * before).encode()[:before] + token.encode() + b"tail"
    secrets = (token,)
    body, body_text = body_fields(raw[: read_size(secrets)], secrets)
    text = body_text if body_text is not None else json.dumps(body)
    assert token not in text
    if len(raw) > MAX_AUDIT_BYTES:
        assert body is None and len(body_text or "") <= MAX_AUDIT_BYTES
        # Nor does what is kept end with the start of it.
        assert not any(text.endswith(token[:k]) for k in range(1, len(token)))
