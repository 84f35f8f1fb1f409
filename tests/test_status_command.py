"""``coordinator status`` against a running coordinator, and its rendering alone."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from coordinator.cli import main
from coordinator.infra.embedded import free_port
from coordinator.status_report import render_status, table
from tests.pipeline import signal_payload
from tests.test_ledger import STOP_ENV, bought
from tests.test_pipeline import signal_id
from tests.test_trailing_stops import tick, ticks_seen, watched
from tests.waiting import wait_for


def test_a_table_pads_its_columns_and_marks_what_is_missing() -> None:
    text = table(("symbol", "stop"), [("BTCUSDC", 61_234.5), ("SOLUSDC", None)])
    assert text.splitlines() == [
        "symbol   stop",
        "-------  -------",
        "BTCUSDC  61234.5",
        "SOLUSDC  -",
    ]


def test_an_answer_that_did_not_come_is_said_in_its_section() -> None:
    text = render_status(
        "http://127.0.0.1:5003",
        {
            "status": "cannot reach http://127.0.0.1:5003: ConnectionError",
            "health": "cannot reach http://127.0.0.1:5003: ConnectionError",
            "stops": {"positions": []},
            "decisions": "/decisions?limit=10 answered 503: store unavailable",
        },
    )
    assert "state unknown: cannot reach" in text
    assert "no open position watched" in text
    assert "Last decisions\nunavailable: /decisions?limit=10 answered 503" in text


def test_status_prints_the_state_a_position_and_the_last_decisions(
    pipelines: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = pipelines(STOP_ENV)
    bought(pipe, "SOLUSDC")
    watched(pipe, "SOLUSDC")
    tick(pipe, "SOLUSDC", 151.0)
    ticks_seen(pipe, "SOLUSDC", 151.0)
    refused = signal_payload("ETHUSDC", "SELL")  # nothing held: refused no_position
    pipe.publish(refused)
    refusal = pipe.decision(signal_id(refused))["decision"]
    assert (refusal["outcome"], refusal["reason"]) == ("rejected", "no_position")
    # The only coordinator on this database (an earlier test's lease lapses within one).
    wait_for(lambda: requests.get(pipe.url + "/status", timeout=5).json()["role"] == "leader")
    capsys.readouterr()

    assert main(["status", "--url", pipe.url]) == 0

    out = capsys.readouterr().out
    assert "trading   ACTIVE (buys allowed, sells allowed)" in out
    assert "role leader" in out
    assert f"instance {pipe.config.instance.name} (cluster)" in out
    position = next(line for line in out.splitlines() if line.startswith("SOLUSDC "))
    assert "151" in position.split() and "watching" in position.split()
    decided = [line for line in out.splitlines() if " ETHUSDC " in line]
    assert decided and "rejected" in decided[0] and "no_position" in decided[0]
    assert any(" SOLUSDC " in line and "accepted" in line for line in out.splitlines())


def test_status_of_nothing_listening_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["status", "--url", url]) == 1
    assert f"cannot reach a coordinator at {url}" in capsys.readouterr().err
