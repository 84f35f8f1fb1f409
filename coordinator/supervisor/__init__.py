"""Supervision for pykka actors: child specs, restart policy, the directory of live refs."""

from coordinator.supervisor.child import (
    NOT_HANDLED,
    ActorContext,
    ChildActor,
    DrillBoard,
    EscapedBaseException,
)
from coordinator.supervisor.directory import ChildUnavailable, Directory
from coordinator.supervisor.spec import ChildSpec, Restart, Strategy
from coordinator.supervisor.supervisor import ChildState, Supervisor, TreeOutcome, TreeState

__all__ = [
    "NOT_HANDLED",
    "ActorContext",
    "ChildActor",
    "ChildSpec",
    "ChildState",
    "ChildUnavailable",
    "Directory",
    "DrillBoard",
    "EscapedBaseException",
    "Restart",
    "Strategy",
    "Supervisor",
    "TreeOutcome",
    "TreeState",
]
