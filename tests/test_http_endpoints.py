"""The one decorator every route goes through, on a small app served over real HTTP:
the token, an actor that does not answer, and the reuse of read-only answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bottle
import pytest
import requests

from coordinator.http.asking import ActorUnavailable
from coordinator.http.endpoints import Endpoints, json_error
from coordinator.http.server import HttpServer

TOKEN = "a-token-of-sixteen-or-more"


class Board:
    """What the routes read: a counter of answers and an actor that may be away."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0
        self.away = False


@pytest.fixture
def served() -> Iterator[tuple[str, Board]]:
    board = Board()
    app = bottle.Bottle(catchall=True, autojson=True)
    app.default_error_handler = json_error  # type: ignore[method-assign]
    endpoint = Endpoints(app, api_token=TOKEN, snapshot_ttl=1.0, clock=lambda: board.now)

    def read() -> dict[str, Any]:
        if board.away:
            raise ActorUnavailable("ledger", "no answer within 2 s")
        board.reads += 1
        return {"reads": board.reads}

    endpoint("GET", "/cached", cached=True)(read)
    endpoint("GET", "/fresh")(read)
    endpoint("POST", "/command", token=True)(lambda: {"done": True})
    server = HttpServer(app, host="127.0.0.1", port=0, threads=2).start()
    try:
        yield server.url, board
    finally:
        server.stop()


def test_a_cached_read_is_reused_until_its_ttl_and_a_command_drops_it(served) -> None:
    url, board = served
    assert requests.get(url + "/cached", timeout=5).json() == {"reads": 1}
    assert requests.get(url + "/cached", timeout=5).json() == {"reads": 1}

    board.now = 1.5
    assert requests.get(url + "/cached", timeout=5).json() == {"reads": 2}

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(url + "/command", headers=auth, timeout=5).json() == {"done": True}
    assert requests.get(url + "/cached", timeout=5).json() == {"reads": 3}
    assert requests.get(url + "/fresh", timeout=5).json() == {"reads": 4}


@pytest.mark.parametrize("path", ["/cached", "/fresh"])
def test_an_actor_away_gives_503_naming_it_whether_cached_or_not(served, path) -> None:
    url, board = served
    board.away = True

    response = requests.get(url + path, timeout=5)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "error": "actor ledger is unavailable: no answer within 2 s",
        "actor": "ledger",
        "status": 503,
    }


def test_a_command_without_the_token_is_refused_and_keeps_the_cache(served) -> None:
    url, _ = served
    requests.get(url + "/cached", timeout=5)

    refused = requests.post(url + "/command", timeout=5)
    wrong = requests.post(url + "/command", headers={"Authorization": "Bearer nope"}, timeout=5)

    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="coordinator"'
    assert "COORDINATOR_API_TOKEN" in refused.json()["error"]
    assert requests.get(url + "/cached", timeout=5).json() == {"reads": 1}
