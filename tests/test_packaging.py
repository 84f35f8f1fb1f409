"""The files that ship the service agree with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from coordinator.config import SETTINGS, describe_settings

ROOT = Path(__file__).resolve().parent.parent
KNOWN = {setting.name for setting in SETTINGS} | {"COORDINATOR_CONFIG"}
COORDINATORS = ("coordinator-1", "coordinator-2", "coordinator-3")


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def test_compose_parses_and_names_only_known_variables():
    services = compose_services()
    assert set(services) == {"redis", "postgres", *COORDINATORS}
    for name in COORDINATORS:
        unknown = set(services[name]["environment"]) - KNOWN
        assert not unknown, f"{name} sets variables the config does not know: {unknown}"
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"]


def test_compose_runs_three_instances_of_one_cluster_on_the_same_servers():
    services = compose_services()
    coordinators = [services[name] for name in COORDINATORS]
    environments = [c["environment"] for c in coordinators]
    assert [e["COORDINATOR_INSTANCE"] for e in environments] == list(COORDINATORS)
    assert all(e["COORDINATOR_INSTANCES"] == "cluster" for e in environments)
    # The same Redis and PostgreSQL behind each.
    shared = ("REDIS_HOST", "PGHOST", "PGDATABASE", "PGUSER", "TRADER_API_URL")
    assert len({tuple(e[k] for k in shared) for e in environments}) == 1
    assert environments[0]["REDIS_HOST"] == "redis" and environments[0]["PGHOST"] == "postgres"
    ports = [c["ports"] for c in coordinators]
    assert ports == [["127.0.0.1:5003:5003"], ["127.0.0.1:5004:5003"], ["127.0.0.1:5005:5003"]]
    for coordinator in coordinators:
        assert set(coordinator["depends_on"]) == {"redis", "postgres"}
        assert coordinator["environment"]["COORDINATOR_PORT"] == "5003"
    # `docker compose up` starts one; the cluster profile adds the other two.
    assert [c.get("profiles") for c in coordinators] == [None, ["cluster"], ["cluster"]]


def test_dockerfile_runs_unprivileged_and_checks_health():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert "pip install ." in dockerfile
    assert re.search(r"^EXPOSE 5003$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*", dockerfile, re.M) and "/health" in dockerfile
    env_names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", dockerfile))
    assert (
        env_names
        - {
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONUNBUFFERED",
            "PIP_NO_CACHE_DIR",
            "PIP_DISABLE_PIP_VERSION_CHECK",
        }
        <= KNOWN
    )


def test_readme_opens_with_the_two_commands_and_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:40])
    assert "make run" in head and "make test" in head
    rows = [
        f"| `{name}` | {default or '(unset)'} | {allowed} | {meaning} |"
        for name, default, allowed, meaning in describe_settings()
    ]
    stale = [row for row in rows if row not in readme]
    assert not stale, "README's configuration table differs from the code:\n" + "\n".join(stale)


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
