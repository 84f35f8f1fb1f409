"""The OpenAPI document at GET /openapi.json stays true: it names exactly the routes
Bottle has installed, it is valid OpenAPI 3.1, and a live coordinator answers every
route (commands included) as it says, checked by schemathesis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coordinator.http.openapi import document
from tests.pipeline import AUTH, Pipeline

# No 5xx, and every answer's status, content type, headers and body as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Enough to reach every branch the schemas describe; the run stays under a minute on
# two cores.
EXAMPLES = 30
# Drills on a real actor, on purpose and harmless: a short hang. Generated names are
# not actors' (404): a generated crash or fail-start would take actors down for the
# rest of the run, which would then test restarts rather than the API.
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


def test_the_live_daemon_answers_every_route_as_documented(live):
    raw = requests.get(live.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    tested: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        tested.add(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(base_url=live.url, headers=AUTH, checks=CHECKS, timeout=20)

        try:
            answers_as_documented()
        except Exception as exc:  # every operation is run; all failures reported at once
            failures.append(f"{operation.label}: {exc}")
    assert len(tested) == sum(len(item) for item in raw["paths"].values())

    drill = schema["/drills/actors/{name}/{kind}"]["POST"]
    case = drill.Case(path_parameters=REAL_DRILL, query={"seconds": 0.05})
    answer = case.call_and_validate(base_url=live.url, headers=AUTH, checks=CHECKS, timeout=20)
    assert answer.status_code == 202
    assert not failures, "\n\n".join(failures)
