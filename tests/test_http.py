"""The HTTP API over real actors, served by waitress on a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from coordinator.config import load_config
from coordinator.daemon import Coordinator
from coordinator.infra.embedded import free_port
from tests.trees import FAST_HEALTH
from tests.waiting import wait_for

TOKEN = "t0ken-for-the-tests-only"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def start_coordinator(
    redis_server, postgres, trader, portfolio, clear_kill_switch, tmp_path
) -> Iterator[Any]:
    started: list[Coordinator] = []

    def start(**env: str) -> tuple[Coordinator, str]:
        settings = {
            **FAST_HEALTH,
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": postgres.dsn,
            "TRADER_API_URL": trader.url,
            "PORTFOLIO_API_URL": portfolio.url,
            "COORDINATOR_PORT": str(free_port()),
            # Its own: the default (.coordinator in the working directory) is locked by
            # whichever test process holds it, and tests run in parallel.
            "COORDINATOR_DATA_DIR": str(tmp_path / f"data{len(started)}"),
            "COORDINATOR_API_TOKEN": TOKEN,
            "COORDINATOR_DRILLS": "1",
            # Well above a busy machine's pauses: a route's 503 for a slow actor is a
            # failure here, save in the tests that hang one and set it short.
            "HTTP_ASK_TIMEOUT": "3",
            "HTTP_SNAPSHOT_TTL": "0",
            # Beside other tests' coordinators on the session's database.
            "COORDINATOR_INSTANCES": "cluster",
            **env,
        }
        settings = {k: v for k, v in settings.items() if v != ""}
        coordinator = Coordinator(load_config(settings))
        coordinator.start()
        started.append(coordinator)
        assert coordinator.http is not None
        return coordinator, coordinator.http.url

    yield start
    for coordinator in started:
        coordinator.stop()


def get(base: str, path: str) -> requests.Response:
    return requests.get(base + path, timeout=5)


def wait_healthy(base: str) -> dict[str, Any]:
    return wait_for(
        lambda: (r := get(base, "/health")).json()["status"] == "healthy" and r.json(),
        message="healthy",
    )


def test_health_reports_components_and_actors(start_coordinator):
    _, base = start_coordinator()
    body = wait_healthy(base)

    assert set(body) >= {"status", "timestamp", "uptime", "components", "actors"}
    assert set(body["components"]) == {"trader", "portfolio", "redis", "postgres"}
    assert all(c["status"] == "up" for c in body["components"].values())
    assert body["actors"]["service_health"]["state"] == "running"
    assert body["trading"]["state"] == "ACTIVE"
    assert body["uptime"] > 0


def test_status_has_the_trading_state_and_breakers(start_coordinator):
    _, base = start_coordinator()
    wait_healthy(base)
    body = get(base, "/status").json()
    assert body["running"] is True
    assert body["version"]
    assert body["trading_state"] == "ACTIVE"
    assert body["dependencies"]["redis"]["breaker"] == "closed"
    assert "***" in body["dependencies"]["postgres"]["target"]


def test_diagnostic_shows_tree_probes_and_redacted_config(start_coordinator, postgres):
    _, base = start_coordinator()
    wait_healthy(base)
    body = get(base, "/diagnostic").json()

    names = [child["name"] for child in body["supervisor"]["children"]]
    assert names[:2] == ["instance_keeper", "service_health"]
    probe = body["dependencies"]["postgres"]["last_probe"]
    assert probe["latency_ms"] is not None and probe["at"]
    config = body["config"]
    assert config["COORDINATOR_API_TOKEN"]["value"] == "***"
    assert postgres.password not in str(config)
    assert config["DATABASE_URL"]["source"] == "environment"
    assert body["embedded_servers"] == {"redis": False, "postgres": False}


def _child(base: str, name: str) -> dict[str, Any]:
    children = get(base, "/supervisor").json()["children"]
    found: dict[str, Any] = next(child for child in children if child["name"] == name)
    return found


def test_supervisor_snapshot(start_coordinator):
    _, base = start_coordinator()
    body = get(base, "/supervisor").json()
    assert body["state"] == "running"
    assert body["strategy"] == "one_for_one"
    child = body["children"][0]
    assert set(child) >= {"state", "restarts", "last_failure", "mailbox_depth", "uptime"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/health", 405), ("PUT", "/trading/halt", 405)],
)
def test_every_error_is_json(start_coordinator, method, path, status):
    _, base = start_coordinator()
    response = requests.request(method, base + path, timeout=5)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["status"] == status
    assert response.json()["error"]


def test_mutating_endpoints_need_the_token(start_coordinator):
    _, base = start_coordinator()
    missing = requests.post(base + "/trading/halt", json={"reason": "x"}, timeout=5)
    wrong = requests.post(
        base + "/trading/halt",
        json={"reason": "x"},
        headers={"Authorization": "Bearer wrong-token-wrong-token"},
        timeout=5,
    )
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "COORDINATOR_API_TOKEN" in wrong.json()["error"]
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_without_a_token_mutating_endpoints_say_how_to_enable_them(start_coordinator):
    _, base = start_coordinator(COORDINATOR_API_TOKEN="")
    response = requests.post(base + "/trading/halt", json={"reason": "x"}, headers=AUTH, timeout=5)
    assert response.status_code == 403
    assert "set COORDINATOR_API_TOKEN" in response.json()["error"]


def test_halt_and_resume(start_coordinator):
    _, base = start_coordinator()
    wait_healthy(base)

    no_reason = requests.post(base + "/trading/halt", json={}, headers=AUTH, timeout=5)
    assert no_reason.status_code == 400
    assert "reason" in no_reason.json()["error"]
    bad_json = requests.post(base + "/trading/halt", data="{", headers=AUTH, timeout=5)
    assert bad_json.status_code == 400

    halted = requests.post(
        base + "/trading/halt",
        json={"reason": "news", "operator": "alice"},
        headers=AUTH,
        timeout=5,
    )
    assert halted.status_code == 200
    assert halted.json()["trading"]["state"] == "HALTED"
    assert get(base, "/status").json()["trading_state"] == "HALTED"
    reasons = get(base, "/status").json()["trading"]["reasons"]
    assert reasons[0]["code"] == "manual_halt" and "alice" in reasons[0]["detail"]

    # Exits stay allowed unless the operator blocks them.
    status = get(base, "/status").json()
    assert status["kill_switch"]["exits"] == "allow"
    assert (status["trading"]["buys_allowed"], status["trading"]["sells_allowed"]) == (False, True)
    assert get(base, "/health").json()["kill_switch"]["exits"] == "allow"

    resumed = requests.post(base + "/trading/resume", headers=AUTH, timeout=5)
    assert resumed.status_code == 200
    wait_healthy(base)


@pytest.mark.parametrize("exits", ["maybe", 1, None, "BLOCK"])
def test_a_halt_with_a_bad_exit_policy_is_refused_naming_it(start_coordinator, exits):
    _, base = start_coordinator()
    wait_healthy(base)
    response = requests.post(
        base + "/trading/halt", json={"reason": "x", "exits": exits}, headers=AUTH, timeout=5
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "'exits'" in error and "'allow'" in error and "'block'" in error
    assert get(base, "/status").json()["trading_state"] == "ACTIVE"


def test_a_halt_blocking_exits_holds_sells_and_says_so(start_coordinator):
    _, base = start_coordinator()
    wait_healthy(base)
    halted = requests.post(
        base + "/trading/halt",
        json={"reason": "exchange incident", "exits": "block"},
        headers=AUTH,
        timeout=5,
    )
    assert halted.status_code == 200
    assert halted.json()["kill_switch"]["exits"] == "block"
    status = get(base, "/status").json()
    assert status["kill_switch"] == {**status["kill_switch"], "halted": True, "exits": "block"}
    assert status["trading"]["sells_allowed"] is False
    assert status["trading"]["reasons"][0]["code"] == "manual_halt_exits_blocked"
    assert get(base, "/health").json()["kill_switch"]["exits"] == "block"


def test_drills_are_refused_unless_enabled(start_coordinator):
    _, base = start_coordinator(COORDINATOR_DRILLS="0")
    response = requests.post(base + "/drills/actors/service_health/crash", headers=AUTH, timeout=5)
    assert response.status_code == 403
    assert "COORDINATOR_DRILLS=1" in response.json()["error"]


def test_drill_crash_is_survived(start_coordinator):
    _, base = start_coordinator()
    response = requests.post(base + "/drills/actors/service_health/crash", headers=AUTH, timeout=5)
    assert response.status_code == 202
    wait_for(
        lambda: _child(base, "service_health")["incarnation"] == 2,
        message="service_health replaced",
    )
    wait_healthy(base)


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/drills/actors/nobody/crash", 404, "no actor named 'nobody'"),
        ("/drills/actors/service_health/explode", 400, "unknown drill"),
        ("/drills/actors/service_health/hang?seconds=abc", 400, "seconds"),
        ("/drills/actors/service_health/hang?seconds=-1", 400, "seconds"),
    ],
)
def test_bad_drills_get_clear_errors(start_coordinator, path, status, error):
    _, base = start_coordinator()
    response = requests.post(base + path, headers=AUTH, timeout=5)
    assert response.status_code == status
    assert error in response.json()["error"]


def test_an_actor_that_does_not_answer_gives_503_naming_it(start_coordinator):
    _, base = start_coordinator(SUPERVISOR_LIVENESS_TIMEOUT="30", HTTP_ASK_TIMEOUT="0.3")
    requests.post(base + "/drills/actors/service_health/hang?seconds=3", headers=AUTH, timeout=5)

    response = get(base, "/status")

    assert response.status_code == 503
    assert response.json()["actor"] == "service_health"
    assert "service_health" in response.json()["error"]
    assert response.headers["Retry-After"] == "1"
    # /health still answers, degraded, naming the actor.
    health = get(base, "/health").json()
    assert health["status"] == "degraded"
    assert any("service_health" in problem for problem in health["problems"])


def test_published_health_and_status_show_a_command_at_once(start_coordinator):
    _, base = start_coordinator(HTTP_SNAPSHOT_TTL="0.2")
    wait_healthy(base)

    requests.post(base + "/trading/halt", json={"reason": "x"}, headers=AUTH, timeout=5)

    assert get(base, "/health").json()["kill_switch"]["halted"] is True
    assert get(base, "/status").json()["trading_state"] == "HALTED"


def test_published_health_names_an_actor_that_does_not_answer(start_coordinator):
    """Produced off the request path, /health still shows a hung actor, within its
    staleness (HTTP_SNAPSHOT_TTL + 2 x HTTP_ASK_TIMEOUT)."""
    _, base = start_coordinator(
        SUPERVISOR_LIVENESS_TIMEOUT="30", HTTP_SNAPSHOT_TTL="0.2", HTTP_ASK_TIMEOUT="0.3"
    )
    wait_healthy(base)
    requests.post(base + "/drills/actors/service_health/hang?seconds=4", headers=AUTH, timeout=5)

    health = wait_for(
        lambda: (h := get(base, "/health").json())["status"] == "degraded" and h,
        timeout=3,
        message="/health degraded",
    )
    assert any("service_health" in problem for problem in health["problems"])
    # A Response of a 503 is falsy: wait for it in a list.
    [status] = wait_for(
        lambda: (r := get(base, "/status")).status_code == 503 and [r],
        timeout=3,
        message="/status 503",
    )
    assert status.json()["actor"] == "service_health"
    assert status.headers["Retry-After"] == "1"


def test_escalated_tree_is_unhealthy(start_coordinator):
    coordinator, base = start_coordinator(SUPERVISOR_MAX_RESTARTS="0")
    requests.post(base + "/drills/actors/service_health/crash", headers=AUTH, timeout=5)

    assert coordinator.outcome.finished.wait(10)
    response = get(base, "/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "restart intensity exceeded" in get(base, "/supervisor").json()["failure"]


def test_read_only_answers_are_reused_briefly_and_dropped_after_a_command(start_coordinator):
    # Asks given time: on a loaded machine a production that times out publishes
    # nothing, and each request then produces an answer of its own.
    _, base = start_coordinator(HTTP_SNAPSHOT_TTL="5", HTTP_ASK_TIMEOUT="5")
    wait_for(lambda: get(base, "/status").json()["trading_state"] == "ACTIVE", timeout=15)
    first = get(base, "/status").json()
    assert get(base, "/status").json()["timestamp"] == first["timestamp"]

    requests.post(base + "/trading/halt", json={"reason": "x"}, headers=AUTH, timeout=5)

    after = get(base, "/status").json()
    assert after["timestamp"] != first["timestamp"]
    assert after["trading_state"] == "HALTED"


def test_fail_start_drill_makes_the_next_start_fail_once(start_coordinator):
    _, base = start_coordinator()
    armed = requests.post(
        base + "/drills/actors/service_health/fail-start", headers=AUTH, timeout=5
    )
    assert armed.status_code == 202
    requests.post(base + "/drills/actors/service_health/crash", headers=AUTH, timeout=5)

    child = wait_for(
        lambda: (
            (c := _child(base, "service_health"))["incarnation"] == 3
            and c["state"] == "running"
            and c
        ),
        message="service_health running after one failed start",
    )
    assert child["restarts"] == 2
    assert child["last_failure"]["type"] == "DrillStartFailure"
    assert child["last_failure"]["phase"] == "start"


def test_servers_given_by_host_variables_are_used(start_coordinator, redis_server, postgres):
    _, base = start_coordinator(
        REDIS_URL="",
        DATABASE_URL="",
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis_server.port),
        REDIS_PASSWORD=redis_server.password,
        PGHOST="127.0.0.1",
        PGPORT=str(postgres.port),
        PGUSER="postgres",
        PGPASSWORD=postgres.password,
        PGDATABASE=postgres.database,
    )
    body = wait_healthy(base)
    assert body["components"]["redis"]["status"] == "up"
    status = get(base, "/status").json()
    assert status["dependencies"]["postgres"]["target"] == (
        f"host=127.0.0.1 port={postgres.port} user=postgres dbname={postgres.database}"
    )
    assert status["dependencies"]["redis"]["target"].startswith("redis://:***@127.0.0.1:")


def test_health_status_and_diagnostic_say_where_orders_go(start_coordinator):
    _, base = start_coordinator()
    body = wait_healthy(base)
    assert body["paper"] is False and body["mode"] == "live"
    status = get(base, "/status").json()
    assert status["paper"] is False and status["mode"] == "live"
    diagnostic = get(base, "/diagnostic").json()
    assert diagnostic["paper"] is False and diagnostic["mode"] == "live"
    assert diagnostic["config"]["PAPER_TRADING"] == {
        "value": False,
        "source": "derived: Redis, PostgreSQL or a service URL configured",
    }
