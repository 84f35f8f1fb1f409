"""`coordinator demo` as a process: usage errors, and the whole demo trading on paper."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from coordinator.infra.embedded import free_port
from tests.shared_data import CANDLES, needs_candles
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
HEADER = "time_ms,open,high,low,close,volume\n"
T0 = 1_515_560_100_000
FIVE_MINUTES = 300_000


# --- the whole demo ---------------------------------------------------------------------


def _environment() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "PG", "DATABASE_", "COORDINATOR_", "TRADER_", "PORTFOLIO_"))
        and k not in ("PAPER_TRADING", "LOG_LEVEL", "TRADING_SYMBOLS")
    } | {"PYTHONUNBUFFERED": "1"}


def test_missing_candles_exit_2_naming_the_folder(tmp_path):
    missing = tmp_path / "no-candles"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator",
            "demo",
            "--candles",
            str(missing),
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert str(missing) in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("before", "after", "said"),
    [
        ((), ("--speed", "0"), "--speed must be above 0"),
        (("--config", "demo.toml"), (), "--config is not read by the demo"),
    ],
)
def test_bad_usage_exits_2_saying_why(tmp_path, before, after, said):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator",
            *before,
            "demo",
            "--data-dir",
            str(tmp_path / "data"),
            *after,
        ],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert not (tmp_path / "data").exists()


def _start_demo(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """``coordinator demo`` at 3000x on ``port``: its stdout in demo.out, its log in
    demo.log of ``tmp_path``."""
    with (tmp_path / "demo.out").open("wb") as out, (tmp_path / "demo.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator",
                "demo",
                "--candles",
                str(CANDLES),
                "--speed",
                "3000",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            cwd=ROOT,
            env=_environment(),
            stdout=out,
            stderr=log,
        )


def _get(api: str, path: str) -> Any:
    try:
        return requests.get(api + path, timeout=2).json()
    except (requests.RequestException, ValueError):
        return None


def _running(process: subprocess.Popen[bytes], tmp_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(
            f"the demo exited {process.returncode}: {(tmp_path / 'demo.log').read_text()}"
        )
    return True


@needs_candles
@pytest.mark.timeout(120)
def test_the_demo_trades_on_paper_and_stops_cleanly(tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    out = tmp_path / "demo.out"
    process = _start_demo(tmp_path, port)
    seen: dict[str, Any] = {}

    def get(path: str) -> Any:
        return _get(api, path)

    def traded() -> bool:
        _running(process, tmp_path)
        stats, stops, universe = get("/stats"), get("/trailing-stops"), get("/universe")
        if stats and stats.get("orders_sent"):
            seen["orders"] = stats["orders_sent"]
        if stops and stops.get("count"):
            seen["position"] = stops["positions"][0]
        if universe and universe.get("selected_symbols") and universe.get("last_update"):
            seen["universe"] = universe["selected_symbols"]
        return {"orders", "position", "universe"} <= set(seen)

    try:
        wait_for(
            traded, timeout=90, interval=0.2, message="orders, a watched position and a universe"
        )
        paper = get("/health")
        assert paper and paper["paper"] is True
        assert seen["position"]["symbol"].endswith("USDC")
        assert set(seen["universe"]) <= {
            "ADAUSDC",
            "ETCUSDC",
            "ETHUSDC",
            "LTCUSDC",
            "NXTUSDC",
            "TRXUSDC",
            "XLMUSDC",
        }
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    printed = out.read_text()
    assert f"dashboard: {api}/" in printed
    assert "1 BTC = 10,000 USDC" in printed
    assert "replay 2018-" in printed  # the progress line, one every 10 s off a terminal
    assert printed.rstrip().endswith("demo stopped")


@needs_candles
@pytest.mark.timeout(150)
def test_the_dashboard_shows_the_demo_at_work(tmp_path, browser):
    """The README's picture: the dashboard of the demo once it has traded, saved as
    dashboard-demo.png in the test's directory (and copied where DASHBOARD_SCREENSHOT
    says, which is how docs/dashboard-demo.png is made)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    process = _start_demo(tmp_path, port)
    try:
        wait_for(
            lambda: (
                _running(process, tmp_path)
                and ((_get(api, "/trailing-stops") or {}).get("count") or 0) >= 2
                and ((_get(api, "/stats") or {}).get("orders_sent") or 0) >= 3
            ),
            timeout=100,
            interval=0.5,
            message="the demo holding two positions",
        )
        browser.get(api + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#positions tr[data-symbol]"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#decisions tr[data-symbol]"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-counts circle"))
        shot = tmp_path / "dashboard-demo.png"
        assert browser.save_screenshot(str(shot))
        print(f"dashboard of the demo: {shot}")
        target = os.environ.get("DASHBOARD_SCREENSHOT")
        if target:
            shutil.copyfile(shot, target)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
