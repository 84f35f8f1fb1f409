"""The identity of a coordinator among those sharing one Redis and one PostgreSQL: what
a name may be, and the name it gets when none is set."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from pathlib import Path

__all__ = ["INSTANCE_ALLOWED", "INSTANCE_PATTERN", "InstanceMode", "default_instance"]

INSTANCE_PATTERN = r"[A-Za-z0-9_.:-]{1,100}"
"""What Redis takes as a consumer name and PostgreSQL as a session setting unquoted."""
INSTANCE_ALLOWED = "1 to 100 of A-Z a-z 0-9 _ . : -"

_DIGITS = 8


class InstanceMode(StrEnum):
    """How many coordinators share the database (COORDINATOR_INSTANCES)."""

    SINGLE = "single"
    """This one alone: it leads from its start without a lease, so that a PostgreSQL
    outage does not stop its trailing stops; a second instance is refused at start."""
    CLUSTER = "cluster"
    """Several: the holder of the leader lease leads, each leader-only write fenced."""


def default_instance(host: str, data_dir: Path) -> str:
    """``<host>-<8 hex>``: the hex of the resolved data directory, so that two daemons of
    one host with different data directories differ, and a restart keeps its name.

    ``data_dir`` is taken as given: the caller resolves it (a relative path names
    another directory from another working directory)."""
    digest = hashlib.sha256(str(data_dir).encode("utf-8")).hexdigest()[:_DIGITS]
    # A host name is letters, digits, dots and dashes; anything else (a misconfigured
    # one) must not make the default an invalid name.
    room = 100 - _DIGITS - 1
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", host)[:room] or "coordinator"
    return f"{name}-{digest}"
