"""The health dashboard at ``GET /``: the JSON answer unchanged for API clients, the
page and its files for a browser, and the page in a real headless Chromium showing a
state, a position and decisions made here, then halting trading from its form."""

from __future__ import annotations

import json
import re
import uuid
from importlib import resources
from typing import Any

import pytest
import requests

from coordinator.http.routes_dashboard import ASSETS, prefers_html
from tests.pipeline import TOKEN, Pipeline, signal_payload
from tests.test_pipeline import signal_id
from tests.test_trailing_stops import ENV as STOP_ENV
from tests.test_trailing_stops import tick, ticks_seen, watched
from tests.waiting import wait_for

STATIC = resources.files("coordinator.http").joinpath("static")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# The routes GET / listed before the dashboard: API clients may rely on each.
ROUTES_BEFORE = {
    "DELETE /universe/blacklist/<symbol>",
    "GET /decisions",
    "GET /diagnostic",
    "GET /health",
    "GET /orders/unknown",
    "GET /signals/<signal_id>",
    "GET /stats",
    "GET /status",
    "GET /supervisor",
    "GET /trailing-stops",
    "GET /universe",
    "GET /universe/history",
    "POST /drills/actors/<name>/<kind>",
    "POST /orders/<client_order_id>/resolve",
    "POST /signals",
    "POST /trading/halt",
    "POST /trading/resume",
    "POST /universe/blacklist",
    "POST /universe/refresh",
}


def index(pipe: Pipeline, accept: str | None) -> requests.Response:
    # None drops the header requests would otherwise send (*/*).
    return requests.get(pipe.url + "/", headers={"Accept": accept}, timeout=10)


# --- content negotiation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html", True),
        (BROWSER_ACCEPT, True),
        ("application/json, text/html", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json;q=0.9", True),
        ("text/*, application/*;q=0.2", True),
        ("text/html;q=0, */*", False),
        ("text/html;q=nonsense, */*;q=0.1", False),
        ("TEXT/HTML", True),
    ],
)
def test_html_only_when_the_client_prefers_it_to_json(accept, html):
    assert prefers_html(accept) is html


def test_api_clients_get_the_same_json_as_before_and_browsers_the_page(pipelines):
    pipe = pipelines()
    answers = {accept: index(pipe, accept) for accept in (None, "*/*", "application/json")}
    for accept, answer in answers.items():
        assert answer.status_code == 200, accept
        assert answer.headers["Content-Type"] == "application/json", accept
    bodies = {answer.content for answer in answers.values()}
    assert len(bodies) == 1, "the JSON answer depends on the Accept header"
    body = bodies.pop()
    listed = json.loads(body)
    # The same document, written the same way, as the index wrote it before.
    assert (
        body
        == json.dumps({"service": "coordinator", "endpoints": sorted(listed["endpoints"])}).encode()
    )
    assert set(listed["endpoints"]) >= ROUTES_BEFORE
    assert "GET /stats/history" in listed["endpoints"]
    assert not {"GET /", "GET /dashboard/<name>"} & set(listed["endpoints"])

    page = index(pipe, BROWSER_ACCEPT)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Vary"] == "Accept"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.text.lstrip().lower().startswith("<!doctype html>")
    assert 'id="halt-form"' in page.text


def test_every_dashboard_file_is_served_with_its_content_type(pipelines):
    pipe = pipelines()
    referenced = re.findall(r'(?:src|href)="(dashboard/[^"]+)"', index(pipe, "text/html").text)
    assert sorted(referenced) == sorted(f"dashboard/{name}" for name in ASSETS)
    for name, content_type in ASSETS.items():
        answer = requests.get(f"{pipe.url}/dashboard/{name}", timeout=10)
        assert answer.status_code == 200, name
        assert answer.headers["Content-Type"] == content_type
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.content == STATIC.joinpath(name).read_bytes()
    for name in ("dashboard.html", "nothing.js", "..%2Froutes_dashboard.py"):
        answer = requests.get(f"{pipe.url}/dashboard/{name}", timeout=10)
        assert answer.status_code == 404, name
        assert answer.headers["Content-Type"] == "application/json"


def test_the_dashboard_files_load_nothing_from_elsewhere():
    names = sorted(entry.name for entry in STATIC.iterdir() if entry.is_file())
    assert sorted(names) == sorted([*ASSETS, "dashboard.html"])
    for name in names:
        text = STATIC.joinpath(name).read_text()
        assert not re.findall(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert "innerHTML" not in text and "outerHTML" not in text, name
        assert "localStorage" not in text and "sessionStorage" not in text, name
        assert "document.cookie" not in text, name


def test_stats_history_counts_the_minute_of_a_decision(pipelines):
    pipe = pipelines()
    refused = signal_payload("NOPEUSDC", "BUY", price=1.0)
    pipe.publish(refused)
    assert pipe.decision(signal_id(refused))["decision"]["reason"] == "not_in_universe"
    history = wait_for(
        lambda: (
            (answer := requests.get(pipe.url + "/stats/history", timeout=10).json())["minutes"]
            and answer
        ),
        message="a minute in the history",
    )
    assert history["bucket_seconds"] == 60
    (minute,) = history["minutes"]
    assert minute["signals"] == 1 and minute["rejected"] == 1 and minute["accepted"] == 0
    assert minute["rejections_by_reason"] == {"not_in_universe": 1}
    assert minute["latency_ms"]["p50"] is not None
    assert minute["latency_ms"]["p99"] >= minute["latency_ms"]["p50"]


# --- in a real browser -----------------------------------------------------------------


def text_of(driver: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return "\n".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, selector))


def test_the_dashboard_shows_the_state_a_position_and_decisions_and_halts(
    pipelines, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pipe = pipelines(STOP_ENV)
    buy = signal_payload("ETHUSDC", "BUY")
    pipe.publish(buy)
    assert pipe.decision(signal_id(buy))["decision"]["outcome"] == "accepted"
    watched(pipe, "ETHUSDC")
    tick(pipe, "ETHUSDC", 3300.0)
    position = ticks_seen(pipe, "ETHUSDC", 3300.0)
    assert position["stop"] is not None
    # Signal ids come from outside: this one would run code if the page took it as markup.
    hostile = f"<img src=x onerror=window.__injected=1><b>{uuid.uuid4().hex[:8]}"
    refused = signal_payload("NOPEUSDC", "BUY", price=1.0, consensus_id=hostile)
    pipe.publish(refused)
    decided = wait_for(
        lambda: next((d for d in pipe.decisions() if d["signal_id"] == signal_id(refused)), None),
        message="the refused signal's decision",
    )
    assert decided["reason"] == "not_in_universe"

    browser.get(pipe.url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: text_of(d, "#trading-state") == "ACTIVE")

    def position_row(d: Any) -> list[str] | None:
        rows = d.find_elements(By.CSS_SELECTOR, '#positions tr[data-symbol="ETHUSDC"]')
        return rows and [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")]

    cells = wait.until(position_row)
    assert cells[0] == "ETHUSDC"
    assert float(cells[3]) == 3300.0  # price
    assert float(cells[4]) == position["peak"]
    assert float(cells[5]) == position["stop"]
    assert cells[7].startswith(str(position["distance_to_stop_percent"]).removesuffix(".0"))

    wait.until(lambda d: signal_id(refused) in text_of(d, "#decisions"))
    decisions = text_of(browser, "#decisions")
    assert signal_id(buy) in decisions
    refused_row = next(line for line in decisions.splitlines() if signal_id(refused) in line)
    assert "rejected" in refused_row and "not_in_universe" in refused_row
    assert text_of(browser, "#mode") in ("paper", "live")
    wait.until(lambda d: text_of(d, "#health") in ("healthy", "degraded"))
    wait.until(lambda d: "2 signals received" in text_of(d, "#counts"))
    wait.until(lambda d: "ETHUSDC" in text_of(d, "#universe"))
    assert "trader" in text_of(browser, "#dependencies")
    assert "validator-0" in text_of(browser, "#actors")
    assert browser.execute_script("return window.__injected === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#decisions img, #decisions b")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-counts circle"))

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "halt-reason").send_keys("checked from the dashboard")
    browser.find_element(By.ID, "halt-submit").click()
    wait.until(lambda d: text_of(d, "#trading-state") == "HALTED")
    assert "→ 200" in text_of(browser, "#command-answer")
    assert "checked from the dashboard" in text_of(browser, "#kill-switch")
    status = requests.get(pipe.url + "/status", timeout=10).json()
    assert status["trading_state"] == "HALTED"
    # The token went with the command and stayed nowhere in the page.
    assert TOKEN not in browser.current_url
    assert browser.execute_script("return document.cookie + JSON.stringify(localStorage)") == "{}"

    # A wrong token: the API's refusal is shown, nothing changes.
    token = browser.find_element(By.ID, "token")
    token.clear()
    token.send_keys("not-the-token-at-all")
    browser.find_element(By.ID, "resume-submit").click()
    wait.until(lambda d: "→ 401" in text_of(d, "#command-answer"))
    assert "missing or wrong bearer token" in text_of(browser, "#command-answer")

    token.clear()
    token.send_keys(TOKEN)
    browser.find_element(By.ID, "blacklist-symbol").send_keys("solusdc")
    browser.find_element(By.ID, "blacklist-reason").send_keys("delisting rumour")
    browser.find_element(By.ID, "blacklist-ttl").send_keys("3600")
    browser.find_element(By.ID, "blacklist-submit").click()
    wait.until(lambda d: "SOLUSDC" in text_of(d, "#blacklist"))
    assert "delisting rumour" in text_of(browser, "#blacklist")
    listed = requests.get(pipe.url + "/universe", timeout=10).json()["blacklist"]
    assert [(b["symbol"], b["reason"]) for b in listed] == [("SOLUSDC", "delisting rumour")]
    assert listed[0]["expires_at"] is not None
    # The operator's actions are on record, shown with the token's fingerprint only.
    wait.until(lambda d: "POST /universe/blacklist" in text_of(d, "#audit"))
    audit = text_of(browser, "#audit")
    assert "POST /trading/halt" in audit and "401" in audit
    assert TOKEN not in audit and TOKEN not in browser.page_source

    screenshot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"dashboard screenshot: {screenshot}")

    browser.find_element(By.ID, "unblacklist-symbol").send_keys("SOLUSDC")
    browser.find_element(By.ID, "unblacklist-submit").click()
    wait.until(lambda d: "SOLUSDC" not in text_of(d, "#blacklist"))
    assert requests.get(pipe.url + "/universe", timeout=10).json()["blacklist"] == []
    browser.find_element(By.ID, "resume-submit").click()
    wait.until(lambda d: text_of(d, "#trading-state") == "ACTIVE")
