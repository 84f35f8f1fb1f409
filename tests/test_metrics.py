"""The Prometheus metrics at GET /metrics: what a whole coordinator decided shows in the
counters and histograms, the gauges follow the breakers and the trading state, every name
follows Prometheus's conventions, and an actor that does not answer leaves a scrape
that still succeeds."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from coordinator.trading.metrics import BUCKETS_S, LatencyHistogram
from tests.pipeline import AUTH, Pipeline, signal_payload
from tests.waiting import wait_for

# Names of things measured in time: a family whose name has one of these ends _seconds.
_TIME_WORDS = ("latency", "duration", "time", "uptime", "age", "delay", "elapsed", "_to_")


def scrape(pipe: Pipeline) -> dict[str, Metric]:
    response = requests.get(pipe.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def samples(family: Metric, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """Each sample named family + suffix, keyed by its sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def value(family: Metric, suffix: str = "", **labels: str) -> float | None:
    return samples(family, suffix).get(tuple(sorted(labels.items())))


def signal_id(payload: dict[str, Any]) -> str:
    return "consensus:" + payload["metadata"]["consensus_id"]


@pytest.fixture
def decided(pipelines) -> Iterator[tuple[Pipeline, dict[str, Metric]]]:
    """A coordinator that decided two signals: a BUY read from Redis and accepted, a
    SELL posted over HTTP with nothing held, rejected no_position."""
    pipe = pipelines()
    buy = signal_payload("ETHUSDC", "BUY")
    pipe.publish(buy)
    assert pipe.decision(signal_id(buy))["decision"]["outcome"] == "accepted"
    sell = signal_payload("SOLUSDC", "SELL")
    assert pipe.post(sell).status_code == 202
    assert pipe.decision(signal_id(sell))["decision"]["reason"] == "no_position"

    def counted() -> dict[str, Metric] | None:
        # Stats hears of decisions and orders as events: wait until it has all three.
        families = scrape(pipe)
        signals = families.get("coordinator_signals")
        orders = families.get("coordinator_orders")
        done = (
            signals is not None
            and sum(samples(signals, "_total").values()) == 2
            and orders is not None
            and sum(samples(orders, "_total").values()) == 1
        )
        return families if done else None

    yield pipe, wait_for(counted, message="the two decisions and the order in /metrics")


def test_the_counters_show_exactly_what_was_decided(decided):
    _, families = decided

    assert samples(families["coordinator_signals"], "_total") == {
        (("outcome", "accepted"), ("source", "pubsub")): 1.0,
        (("outcome", "rejected"), ("source", "http")): 1.0,
    }
    assert samples(families["coordinator_rejections"], "_total") == {
        (("reason", "no_position"),): 1.0
    }
    assert samples(families["coordinator_orders"], "_total") == {(("state", "accepted"),): 1.0}
    assert value(families["coordinator_signals_received"], "_total") == 2
    assert value(families["coordinator_orders_unknown"]) == 0


def test_the_histograms_count_each_latency_once(decided):
    _, families = decided
    expected = {
        "coordinator_intake_to_decision_seconds": 2,
        "coordinator_intake_to_order_seconds": 1,  # the rejected SELL sent no order
        "coordinator_tick_to_exit_order_seconds": 0,
    }
    for name, count in expected.items():
        family = families[name]
        assert family.type == "histogram"
        assert value(family, "_count") == count, name
        buckets = {dict(k)["le"]: v for k, v in samples(family, "_bucket").items()}
        bounds = sorted(buckets, key=float)
        assert [float(b) for b in bounds] == [*BUCKETS_S, math.inf]
        cumulative = [buckets[b] for b in bounds]
        assert cumulative == sorted(cumulative) and cumulative[-1] == count, name
        total = value(family, "_sum")
        assert total is not None and total >= 0 and (total > 0) == (count > 0), name


def test_every_name_follows_the_conventions(decided):
    _, families = decided
    required = {
        "coordinator_signals",
        "coordinator_rejections",
        "coordinator_orders",
        "coordinator_breaker_state",
        "coordinator_trading_state",
        "coordinator_actor_restarts",
        "coordinator_actor_mailbox_depth",
        "coordinator_universe_size",
        "coordinator_positions_watched",
        "coordinator_stops_stale",
        "coordinator_validator_waiting",
        "coordinator_store_journal_depth",
        "coordinator_up",
    }
    assert required <= set(families)
    for name, family in families.items():
        assert name.startswith("coordinator_"), name
        assert name == name.lower() and all(c.isalnum() or c == "_" for c in name), name
        kinds = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        suffixes = kinds.get(family.type, ("",))
        assert family.type in ("counter", "gauge", "histogram"), (name, family.type)
        assert {s.name for s in family.samples} <= {name + x for x in suffixes}, name
        if family.type == "histogram" or any(word in name for word in _TIME_WORDS):
            assert name.endswith("_seconds"), f"{name} measures time: its unit is seconds"
        assert not name.endswith(("_total", "_ms", "_milliseconds")), name
        labels = {label for s in family.samples for label in s.labels} - {"le"}
        assert labels <= {"actor", "dependency", "state", "status", "source", "outcome"} | {
            "reason",
            "validator",
        }, (name, labels)
        assert family.documentation, name


def test_the_gauges_follow_the_actors(decided):
    pipe, families = decided
    status = requests.get(pipe.url + "/status", timeout=10).json()
    universe = requests.get(pipe.url + "/universe", timeout=10).json()
    supervisor = requests.get(pipe.url + "/supervisor", timeout=10).json()

    assert samples(families["coordinator_trading_state"]) == {
        (("state", "ACTIVE"),): 1.0,
        (("state", "DEGRADED"),): 0.0,
        (("state", "HALTED"),): 0.0,
    }
    for dependency in status["dependencies"]:
        states = {
            dict(k)["state"]: v
            for k, v in samples(families["coordinator_breaker_state"]).items()
            if dict(k)["dependency"] == dependency
        }
        assert sorted(states.values()) == [0.0, 0.0, 1.0], (dependency, states)

    def agreeing() -> bool:
        # Read together with /status: a probe may change a breaker between two reads.
        breakers = samples(scrape(pipe)["coordinator_breaker_state"])
        answer = requests.get(pipe.url + "/status", timeout=10).json()["dependencies"]
        return all(
            breakers[(("dependency", name), ("state", dep["breaker"]))] == 1.0
            for name, dep in answer.items()
        )

    wait_for(agreeing, message="the breakers in /metrics as /status shows them")
    assert value(families["coordinator_universe_size"]) == universe["selected_count"]
    restarts = samples(families["coordinator_actor_restarts"], "_total")
    assert {dict(k)["actor"] for k in restarts} == {c["name"] for c in supervisor["children"]}
    assert all(v == 1.0 for v in samples(families["coordinator_up"]).values())
    waiting = samples(families["coordinator_validator_waiting"])
    assert {dict(k)["validator"] for k in waiting} == {
        c["name"] for c in supervisor["children"] if c["name"].startswith("validator-")
    }


def test_breaker_and_trading_state_follow_an_outage_and_a_halt(pipelines):
    pipe = pipelines()
    halted = requests.post(
        pipe.url + "/trading/halt", json={"reason": "metrics test"}, headers=AUTH, timeout=10
    )
    assert halted.status_code == 200, halted.text
    pipe.paper.stop()  # the Trader and the Portfolio are gone

    def down() -> dict[str, Metric] | None:
        families = scrape(pipe)
        open_ = value(families["coordinator_breaker_state"], dependency="trader", state="open")
        return families if open_ == 1.0 else None

    families = wait_for(down, message="the Trader's breaker open in /metrics")
    assert value(families["coordinator_breaker_state"], dependency="trader", state="closed") == 0
    assert value(families["coordinator_breaker_state"], dependency="redis", state="closed") == 1
    assert value(families["coordinator_trading_state"], state="HALTED") == 1
    assert value(families["coordinator_trading_state"], state="ACTIVE") == 0
    assert value(families["coordinator_kill_switch_halted"]) == 1
    assert value(families["coordinator_dependency_status"], dependency="trader", status="up") == 0


def test_an_actor_that_does_not_answer_does_not_fail_the_scrape(pipelines):
    # The supervisor leaves the hung actor alone for the test: a restarted Stats would
    # answer again.
    # Asks wait 2 s: long enough for the actors that answer, on a loaded machine too;
    # Stats hangs past the scrape's asks of it.
    pipe = pipelines({"HTTP_ASK_TIMEOUT": "2", "SUPERVISOR_LIVENESS_TIMEOUT": "60"})
    response = requests.post(
        pipe.url + "/drills/actors/stats/hang?seconds=5", headers=AUTH, timeout=10
    )
    assert response.status_code == 202, response.text

    families = scrape(pipe)

    assert value(families["coordinator_up"], actor="stats") == 0
    assert value(families["coordinator_up"], actor="service_health") == 1
    # What Stats alone holds is left out; the rest is there.
    assert "coordinator_signals" not in families
    assert "coordinator_intake_to_decision_seconds" not in families
    assert value(families["coordinator_trading_state"], state="ACTIVE") == 1
    assert "coordinator_store_journal_depth" in families


def test_the_readme_lists_every_metric(decided):
    _, families = decided
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    for name, family in families.items():
        shown = name + "_total" if family.type == "counter" else name
        assert f"| `{shown}` |" in section, f"{shown} is not in the README's Metrics table"


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=60))
def test_the_fixed_buckets_count_every_observation_in_the_first_bound_above_it(values):
    histogram = LatencyHistogram()
    for ms in values:
        histogram.add(ms)
    counts = histogram.buckets()
    kept = [v for v in values if math.isfinite(v) and v >= 0]
    assert counts.count == histogram.count == len(kept)
    for bound, cumulative in zip(counts.bounds_s, counts.cumulative, strict=False):
        assert cumulative == sum(1 for v in kept if v <= bound * 1000), bound
    assert counts.sum_s == pytest.approx(sum(kept) / 1000)
    assert json.dumps(counts.cumulative)  # plain ints, as a snapshot carries them
