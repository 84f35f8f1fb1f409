"""The audit trail in a whole coordinator: every call of a mutating route, refusals
included, is in PostgreSQL with who sent it (address, token fingerprint, never the token),
its body and its answer; ``GET /audit`` lists them newest first; an entry made while
PostgreSQL is down arrives once it is back."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg2
import pytest
import requests

from tests.pipeline import AUTH, TOKEN, signal_payload
from tests.waiting import wait_for

WRONG = "a-wrong-token-of-some-length"


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def audit(pipe: Any, **params: Any) -> requests.Response:
    return requests.get(pipe.url + "/audit", params=params, timeout=10)


def entries_when(pipe: Any, count: int) -> list[dict[str, Any]]:
    """The newest entries once there are at least ``count``."""
    return wait_for(
        lambda: (
            (r := audit(pipe, limit=1000)).status_code == 200
            and len(r.json()["entries"]) >= count
            and r.json()["entries"]
        ),
        timeout=20,
        message=f"{count} audit entries",
    )


@pytest.fixture
def pipe(pipelines, own_postgres):
    """A coordinator with a database of its own: the trail holds this test's calls only."""
    return pipelines(database_dsn=own_postgres.dsn)


def test_operator_calls_are_on_record_newest_first_and_the_token_nowhere(pipe, own_postgres):
    # The token pasted into a body by mistake is not kept either, nor the answer quoting it.
    halt = requests.post(
        pipe.url + "/trading/halt",
        json={"reason": f"maintenance {TOKEN}", "operator": "alice"},
        headers=AUTH,
        timeout=10,
    )
    assert halt.status_code == 200
    resume = requests.post(pipe.url + "/trading/resume", json={}, headers=AUTH, timeout=10)
    assert resume.status_code == 200
    blacklist = requests.post(
        pipe.url + "/universe/blacklist",
        json={"symbol": "SOLUSDC", "reason": "exchange incident"},
        headers=AUTH,
        timeout=10,
    )
    assert blacklist.status_code == 200
    refused = requests.post(
        pipe.url + "/trading/halt",
        json={"reason": "not me"},
        headers={"Authorization": f"Bearer {WRONG}"},
        timeout=10,
    )
    assert refused.status_code == 401
    bad_body = requests.post(
        pipe.url + "/trading/resume", data="not json", headers=AUTH, timeout=10
    )
    assert bad_body.status_code == 400
    # A signal is recorded as a signal, not in the trail.
    assert pipe.post(signal_payload("BTCUSDC")).status_code in (202, 409, 422)

    entries = entries_when(pipe, 5)
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/trading/resume", 400),
        ("POST", "/trading/halt", 401),
        ("POST", "/universe/blacklist", 200),
        ("POST", "/trading/resume", 200),
        ("POST", "/trading/halt", 200),
    ]
    bad, wrong, added, resumed, halted = entries
    assert all(e["client"] == "127.0.0.1" for e in entries)
    assert [e["token_fingerprint"] for e in entries] == [
        fingerprint(TOKEN),
        fingerprint(WRONG),
        fingerprint(TOKEN),
        fingerprint(TOKEN),
        fingerprint(TOKEN),
    ]
    assert halted["body"] == {"reason": "maintenance [token]", "operator": "alice"}
    # The answers as the caller got them, the token quoted in the halt's reason hidden.
    assert halted["result"] == json.loads(halt.text.replace(TOKEN, "[token]"))
    assert halted["result"]["kill_switch"]["halted"] is True
    assert resumed["result"] == resume.json()
    assert added["result"] == blacklist.json()
    assert added["body"] == {"symbol": "SOLUSDC", "reason": "exchange incident"}
    assert wrong["body"] == {"reason": "not me"}
    assert wrong["result"]["status"] == 401 and "bearer token" in wrong["result"]["error"]
    assert bad["body"] is None and bad["body_text"] == "not json"
    assert "not valid JSON" in bad["result"]["error"]
    assert entries[0]["at"] >= entries[-1]["at"]

    with psycopg2.connect(own_postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM coordinator_audit")
        rows = cur.fetchall()
    assert len(rows) == 5
    for row in rows:
        for value in row:
            assert TOKEN not in str(value)
            assert WRONG not in str(value)


def test_the_limit_is_checked_and_applied(pipe):
    for _ in range(3):
        requests.post(pipe.url + "/trading/resume", headers=AUTH, timeout=10)
    entries_when(pipe, 3)
    assert len(audit(pipe).json()["entries"]) == 3
    two = audit(pipe, limit=2).json()
    assert two["count"] == 2 and len(two["entries"]) == 2
    for bad in ("0", "1001", "ten", "-1"):
        answer = audit(pipe, limit=bad)
        assert answer.status_code == 400
        assert "limit" in answer.json()["error"]


def test_an_entry_made_while_postgres_is_down_arrives_once_it_is_back(pipe, own_postgres):
    own_postgres.stop()
    try:
        refused = requests.post(
            pipe.url + "/universe/refresh",
            headers={"Authorization": f"Bearer {WRONG}"},
            timeout=10,
        )
        assert refused.status_code == 401
        wait_for(
            lambda: pipe.store_snapshot().journaled >= 1,
            timeout=20,
            message="the entry in the local journal",
        )
        down = audit(pipe)
        assert down.status_code == 503
    finally:
        own_postgres.start()
    entries = entries_when(pipe, 1)
    assert [(e["path"], e["status"], e["token_fingerprint"]) for e in entries] == [
        ("/universe/refresh", 401, fingerprint(WRONG))
    ]
    wait_for(lambda: pipe.store_snapshot().journaled == 0, message="the journal emptied")
    assert len(audit(pipe).json()["entries"]) == 1


def test_every_kind_of_mutating_route_is_on_record(pipe):
    calls = [
        ("POST", "/universe/blacklist", {"symbol": "SOLUSDC", "reason": "incident"}, 200),
        ("DELETE", "/universe/blacklist/SOLUSDC", None, 200),
        ("POST", "/universe/refresh", None, 200),
        ("POST", "/drills/actors/stats/hang?seconds=0.05", None, 202),
        ("POST", "/orders/no-such-order/resolve", {"state": "rejected", "note": "checked"}, 404),
    ]
    for method, path, body, status in calls:
        answer = requests.request(method, pipe.url + path, json=body, headers=AUTH, timeout=20)
        assert answer.status_code == status, answer.text

    entries = entries_when(pipe, len(calls))
    assert [(e["method"], e["path"], e["status"], e["body"]) for e in reversed(entries)] == [
        (method, path, status, body) for method, path, body, status in calls
    ]
    assert entries[0]["result"]["client_order_id"] == "no-such-order"


def test_a_body_postgres_would_refuse_as_jsonb_is_kept_visible(pipe):
    # JSON as Python reads it: NaN, a NUL and a lone surrogate, none of which jsonb takes.
    raw = '{"symbol": "BTC\\u0000USDC", "reason": "x\\ud800y", "ttl_s": NaN}'
    answer = requests.post(pipe.url + "/universe/blacklist", data=raw, headers=AUTH, timeout=10)
    assert answer.status_code == 400
    [entry] = entries_when(pipe, 1)
    assert entry["body"] == {"symbol": "BTC\\u0000USDC", "reason": "x\\ud800y", "ttl_s": "nan"}
    assert entry["status"] == 400
