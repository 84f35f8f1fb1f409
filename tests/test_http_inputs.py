"""Inputs that were answered 5xx (or a 200 that did not hold), found by schemathesis
(tests/test_openapi.py) or by trying the edges of what the OpenAPI document describes:
each now a 4xx naming what is wrong, on a whole coordinator over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from coordinator.http.asking import ActorUnavailable
from coordinator.http.facade import CoordinatorApi
from coordinator.messages.supervision import DrillHang
from coordinator.supervisor import DrillBoard
from coordinator.supervisor.directory import Directory
from tests.pipeline import AUTH, Pipeline
from tests.trees import fast_config, make_services


@pytest.fixture
def pipe(pipelines) -> Pipeline:
    # A drill's hang of 1 s below is not to be taken for a hung actor on a loaded machine.
    return pipelines(
        {
            "HTTP_RATE_LIMIT_MUTATING": "off",
            "HTTP_RATE_LIMIT_SIGNALS": "off",
            "SUPERVISOR_LIVENESS_TIMEOUT": "30",
        }
    )


def post(pipe: Pipeline, path: str, body: Any) -> requests.Response:
    return requests.post(pipe.url + path, json=body, headers=AUTH, timeout=10)


@pytest.mark.parametrize(
    "ttl", [1e300, 10**400, 10 * 365 * 86400 + 1], ids=["1e300", "10**400", "ten-years-and-1"]
)
def test_a_blacklist_ttl_past_ten_years_is_400_and_the_universe_still_answers(pipe, ttl):
    # An expiry past year 9999 was taken in memory, then failed in the store and in
    # every view of the universe after it: 500 here, and on GET /universe from then on.
    answer = post(pipe, "/universe/blacklist", {"symbol": "ETHUSDC", "reason": "r", "ttl_s": ttl})
    assert answer.status_code == 400, answer.text
    assert "ttl_s" in answer.json()["error"]
    universe = requests.get(pipe.url + "/universe", timeout=10)
    assert universe.status_code == 200
    assert universe.json()["blacklist"] == []

    ten_years = post(
        pipe, "/universe/blacklist", {"symbol": "ETHUSDC", "reason": "r", "ttl_s": 315360000}
    )
    assert ten_years.status_code == 200, ten_years.text
    assert ten_years.json()["blacklist"][0]["expires_at"].startswith("20")


def test_a_blacklist_change_waits_for_its_store_write_past_the_read_timeout(pipe):
    # The universe manager stores a blacklist change before it answers; asked with the
    # 0.5 s of a read of actor state, a busy store turned the change into a 503 that had
    # taken effect all the same.
    pipe.directory.tell("universe_manager", DrillHang(seconds=1.0))
    added = post(pipe, "/universe/blacklist", {"symbol": "ETHUSDC", "reason": "r"})
    assert added.status_code == 200, added.text
    assert [e["symbol"] for e in added.json()["blacklist"]] == ["ETHUSDC"]
    pipe.directory.tell("universe_manager", DrillHang(seconds=1.0))
    removed = requests.delete(pipe.url + "/universe/blacklist/ETHUSDC", headers=AUTH, timeout=10)
    assert removed.status_code == 200, removed.text
    assert removed.json()["blacklist"] == []


@pytest.mark.parametrize("route", ["/decisions", "/audit", "/universe/history"])
@pytest.mark.parametrize("limit", ["%B2", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_a_limit_not_in_plain_digits_is_400(pipe, route, limit):
    # str.isdigit() takes "²" (Bottle reads %B2 as latin-1) and digit strings int()
    # refuses past 4300 digits: both went on to int() and a 500.
    answer = requests.get(f"{pipe.url}{route}?limit={limit}", timeout=10)
    assert answer.status_code == 400, answer.text
    assert "limit" in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/signals/a%00b"),
        ("POST", "/orders/a%00b/resolve"),
        ("DELETE", "/universe/blacklist/ETH%00USDC"),
    ],
)
def test_a_nul_in_a_path_parameter_is_400_naming_it(pipe, method, path):
    # It reached PostgreSQL, which refuses NUL in text: a 503 blaming the store for a
    # GET, a 500 for an order's resolution.
    answer = requests.request(
        method, pipe.url + path, json={"state": "rejected", "note": "n"}, headers=AUTH, timeout=10
    )
    assert answer.status_code == 400, answer.text
    assert "NUL" in answer.json()["error"] and "path parameter" in answer.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/trading/halt", {"reason": "a\x00b"}, "reason"),
        ("/trading/halt", {"reason": "ok", "operator": "a\x00b"}, "operator"),
        ("/trading/resume", {"operator": "a\x00b"}, "operator"),
        ("/universe/blacklist", {"symbol": "ETHUSDC", "reason": "a\x00b"}, "reason"),
        ("/orders/some-order/resolve", {"state": "rejected", "note": "n", "x": ["\x00"]}, "x[0]"),
    ],
)
def test_a_nul_in_a_command_body_is_400_and_the_command_not_done(pipe, path, body, field):
    # A halt took effect in memory but not in PostgreSQL ("persisted": false, gone at
    # the next restart); a blacklist entry answered 500.
    answer = post(pipe, path, body)
    assert answer.status_code == 400, answer.text
    assert f"body field '{field}' must not contain NUL" in answer.json()["error"]
    status = requests.get(pipe.url + "/status", timeout=10).json()
    assert status["kill_switch"]["halted"] is False
    assert requests.get(pipe.url + "/universe", timeout=10).json()["blacklist"] == []


def test_a_body_nested_too_deep_for_the_parser_is_400(pipe):
    # json.loads raises RecursionError, not ValueError: it went through as a 500.
    answer = requests.post(pipe.url + "/trading/halt", data="[" * 60_000, headers=AUTH, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "not valid JSON" in answer.json()["error"]


@pytest.mark.parametrize("kind", ["crash", "hang"])
def test_a_drill_on_an_actor_down_with_a_full_buffer_is_unavailable_naming_it(kind) -> None:
    """A drill told to an actor that is down and whose buffer of messages for its next
    incarnation is full: the actor is unavailable (the route's 503), not a failure."""
    directory = Directory(buffer_limit=1)
    directory.register("stats")
    directory.tell("stats", object())  # the one message its next incarnation may get
    api = CoordinatorApi(
        services=make_services(fast_config(), redis_url="redis://unused", database_dsn=""),
        supervisor=None,  # type: ignore[arg-type]  # a drill does not ask the tree
        directory=directory,
        drills=DrillBoard(),
    )
    with pytest.raises(ActorUnavailable, match="stats"):
        api.drill("stats", kind, seconds=0.1)
