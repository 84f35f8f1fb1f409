"""The files that ship the service agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from coordinator.config import SETTINGS, describe_settings

ROOT = Path(__file__).resolve().parent.parent
KNOWN = {setting.name for setting in SETTINGS} | {"COORDINATOR_CONFIG"}


def test_compose_parses_and_names_only_known_variables():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "coordinator"}
    coordinator = services["coordinator"]
    unknown = set(coordinator["environment"]) - KNOWN
    assert not unknown, f"the compose file sets variables the config does not know: {unknown}"
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"]
    assert all(port.startswith("127.0.0.1:") for port in coordinator["ports"])
    assert "5003" in coordinator["ports"][0]


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
