"""What an actor doing leader-only work asks at start: does this instance lead now?"""

from __future__ import annotations

import pykka

from coordinator.actors.names import ActorName
from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.lease_store import LeaseStore
from coordinator.infra.store import StoreError
from coordinator.messages.leadership import GetLeadership, LeadershipSnapshot
from coordinator.supervisor.directory import ChildUnavailable, Directory

__all__ = ["lease_holder", "lease_name", "lease_now"]

_ASK_ELECTOR = 1.0  # seconds: the elector answers at once when it runs


def lease_now(directory: Directory) -> LeaseToken | None:
    """The lease this instance leads under, as its elector says now. An incarnation
    that replaces a crashed one while the instance leads takes over at once with it
    (the election was told to its predecessor). None while it follows, or while the
    elector is not running (at a start: it starts last, and tells its election)."""
    try:
        snapshot: LeadershipSnapshot = directory.ask(
            ActorName.LEADER_ELECTOR, GetLeadership(), timeout=_ASK_ELECTOR
        )
    except (ChildUnavailable, pykka.Timeout):
        return None
    return snapshot.token


def lease_name(directory: Directory) -> str | None:
    """The lease this instance contends for (None when the elector does not answer)."""
    try:
        snapshot: LeadershipSnapshot = directory.ask(
            ActorName.LEADER_ELECTOR, GetLeadership(), timeout=_ASK_ELECTOR
        )
    except (ChildUnavailable, pykka.Timeout):
        return None
    return snapshot.lease


def lease_holder(directory: Directory, dsn: str) -> str | None:
    """Who holds the lease this instance contends for, as stored: the leader, as a
    follower names it (None: unknown, or nobody holds it)."""
    name = lease_name(directory)
    if name is None:
        return None
    leases = LeaseStore(dsn, timeout=2.0)
    try:
        row = leases.read(name)
    except StoreError:
        return None
    finally:
        leases.close()
    return None if row is None or row.released else row.holder
