"""Inputs that schemathesis found answered 5xx (tests/test_openapi.py), each now a 4xx
naming what is wrong, on a whole coordinator over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.pipeline import AUTH, Pipeline


@pytest.fixture
def pipe(pipelines) -> Pipeline:
    return pipelines({"HTTP_RATE_LIMIT_MUTATING": "off", "HTTP_RATE_LIMIT_SIGNALS": "off"})


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
