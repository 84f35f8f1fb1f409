"""The OpenAPI document at GET /openapi.json stays true: it names exactly the routes
Bottle has installed, it is valid OpenAPI 3.1, and a live coordinator answers every
route (commands included) as it says, checked by schemathesis."""

from __future__ import annotations

import multiprocessing
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coordinator.http.openapi import document
from coordinator.http.routes_dashboard import ASSETS
from coordinator.infra.pipeline_store import PipelineStore
from coordinator.messages.reconcile import ReconcileSoon
from tests.pipeline import AUTH, Pipeline, signal_payload
from tests.waiting import wait_for

# No 5xx, and every answer's status, content type, headers and body as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Cases per route and generation mode: the whole run stays well under a minute on two
# cores, with the rest of the suite beside it.
EXAMPLES = 20
# A drill on a real actor, on purpose and harmless: a short hang. Generated names are
# not actors' (404): a generated crash or fail-start of a real one would take actors
# down for the rest of the run, which would then test restarts rather than the API.
REAL_DRILL = {"name": "stats", "kind": "hang"}


def routes_installed(pipe: Pipeline) -> set[tuple[str, str]]:
    """(method, path) of every route of the live app, ``<name>`` written ``{name}``."""
    assert pipe.coordinator.http is not None
    app = pipe.coordinator.http.app
    return {
        (route.method.upper(), re.sub(r"<([^>:]+)(:[^>]*)?>", r"{\1}", route.rule))
        for route in app.routes
    }


def routes_documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_valid_openapi_3_1_and_every_ref_resolves():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    pointers = set(refs(doc))
    assert pointers
    for pointer in pointers:
        assert resolve(doc, pointer) is not None, pointer
    # Every component is used somewhere.
    for kind in ("schemas", "responses", "headers"):
        for name in doc["components"][kind]:
            assert f"#/components/{kind}/{name}" in pointers, name


def test_every_route_and_its_token_are_documented(pipelines):
    pipe = pipelines()
    answer = requests.get(pipe.url + "/openapi.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    served = answer.json()
    assert served == document()

    assert routes_documented(served) == routes_installed(pipe)
    listed = requests.get(pipe.url + "/", headers={"Accept": "application/json"}, timeout=10)
    assert "GET /openapi.json" in listed.json()["endpoints"]
    # The routes that take the token are the ones that say so, and only they.
    for path, item in served["paths"].items():
        for method, operation in item.items():
            needs_token = method != "get"
            assert ("security" in operation) is needs_token, (method, path)
            assert ("401" in operation["responses"]) is needs_token, (method, path)


@pytest.fixture
def live(pipelines) -> Pipeline:
    """A whole coordinator with no rate per client: schemathesis would be answered 429."""
    return pipelines({"HTTP_RATE_LIMIT_MUTATING": "off", "HTTP_RATE_LIMIT_SIGNALS": "off"})


def modes(operation: APIOperation) -> tuple[GenerationMode, ...]:
    """Invalid data too where there is something to get wrong: a body, a query, a path
    parameter with a type or a set of values (any string reaches a plain one)."""
    definition = operation.definition.raw
    checked = [
        p
        for p in definition.get("parameters", [])
        if p["in"] == "query" or set(p["schema"]) - {"type", "minLength"}
    ]
    if "requestBody" in definition or checked:
        return GenerationMode.POSITIVE, GenerationMode.NEGATIVE
    return (GenerationMode.POSITIVE,)


def fuzz(
    operation: APIOperation, mode: GenerationMode, url: str, statuses: Counter[str]
) -> str | None:
    """Run ``operation`` on ``EXAMPLES`` generated cases; what failed, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: Any) -> None:
        answer = case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS, timeout=20)
        statuses[f"{operation.label} {answer.status_code}"] += 1

    try:
        answers_as_documented()
    # Every operation is run: all failures reported at once. (schemathesis reports its
    # findings as a BaseExceptionGroup, which ``except Exception`` would let through.)
    except (Exception, BaseExceptionGroup) as exc:
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def unknown_order(pipe: Pipeline) -> str:
    """An order of unknown outcome, sent long before this Trader started (as
    tests/test_held_orders.py makes one): the reconciler leaves it to an operator."""
    writer = PipelineStore(pipe.config.database.url, timeout=5)
    cid = f"coord-{uuid.uuid4().hex}"
    sent_at = time.time() - 3600
    order = {
        "kind": "order",
        "client_order_id": cid,
        "signal_id": f"sig-{cid}",
        "symbol": "BNBUSDC",
        "side": "SELL",
        "quantity": 1.0,
        "reference_price": 580.0,
        "at": sent_at,
        "state": "unknown",
        "error": "no answer",
    }
    writer.write([order])
    writer.close()
    pipe.directory.tell("reconciler", ReconcileSoon(client_order_id=cid, sent_at=sent_at))
    wait_for(
        lambda: any(
            s["client_order_id"] == cid
            for s in requests.get(pipe.url + "/orders/unknown", timeout=10).json()["reconciler"][
                "still_unknown"
            ]
        ),
        message="the reconciler saw the unknown order",
    )
    return cid


def call(
    schema: Any, url: str, method: str, path: str, *, body: Any = NOT_SET, **values: Any
) -> Any:
    """One case of ``path`` (its path parameters and query from ``values``), checked."""
    operation = schema[path][method]
    names = {p.name for p in operation.path_parameters}
    case = operation.Case(
        path_parameters={k: v for k, v in values.items() if k in names},
        query={k: v for k, v in values.items() if k not in names} or None,
        body=body,
    )
    return case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS, timeout=20)


def run_schemathesis(url: str, order: str) -> tuple[list[str], dict[str, int]]:
    """Every route of the coordinator at ``url`` on generated cases, then on those random
    data seldom reaches; what failed, and how many of each (route, status) were seen."""
    raw = requests.get(url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in raw["paths"].values())
    statuses: Counter[str] = Counter()
    failures = [
        failure
        for operation in operations
        for mode in modes(operation)
        if (failure := fuzz(operation, mode, url, statuses)) is not None
    ]

    # The answers of success of the routes that need a resource first.
    sent = call(schema, url, "POST", "/signals", body=signal_payload("BTCUSDC"))
    assert sent.status_code == 202, sent.text
    signal_id = sent.json()["signal_id"]
    wait_for(
        lambda: (
            call(schema, url, "GET", "/signals/{signal_id}", signal_id=signal_id)
            .json()
            .get("decision")
        ),
        message="the signal decided",
    )
    for name in ASSETS:
        assert call(schema, url, "GET", "/dashboard/{name}", name=name).status_code == 200
    body = {"symbol": "XRPUSDC", "reason": "checked", "ttl_s": 600}
    assert call(schema, url, "POST", "/universe/blacklist", body=body).status_code == 200
    taken_off = call(schema, url, "DELETE", "/universe/blacklist/{symbol}", symbol="XRPUSDC")
    assert taken_off.status_code == 200
    resolve = "/orders/{client_order_id}/resolve"
    settled = {"state": "rejected", "note": "checked on the exchange"}
    done = call(schema, url, "POST", resolve, body=settled, client_order_id=order)
    assert done.status_code == 200, done.text
    again = call(schema, url, "POST", resolve, body=settled, client_order_id=order)
    assert again.status_code == 409
    drill = call(schema, url, "POST", "/drills/actors/{name}/{kind}", seconds=0.05, **REAL_DRILL)
    assert drill.status_code == 202
    return failures, dict(statuses)


def test_the_live_daemon_answers_every_route_as_documented(live):
    order = unknown_order(live)
    # In a process of its own: schemathesis patches Hypothesis' globals (its buffer size,
    # its printer) for the rest of the process, which the model tests that run after it
    # in this worker would inherit.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        failures, statuses = child.submit(run_schemathesis, live.url, order).result(timeout=300)
    print("\n".join(f"{n:4} {label}" for label, n in sorted(statuses.items())))
    assert not failures, "\n\n".join(failures)
