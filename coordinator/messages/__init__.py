"""Messages between actors: frozen records, one module per flow.

Commands are imperative (one asked answers with what it did: ``Reserve``), events past
tense, queries ``Get...`` answered by a frozen ``...Snapshot`` (``base`` says more).
They hold tuples and frozensets only: pykka passes them by reference. The snapshots
the HTTP views read may also hold mappings, built afresh for each answer and never kept
by the actor.
"""

from coordinator.messages.base import Command, Event, Message, Query
from coordinator.messages.health import (
    DependencyChanged,
    DependencySnapshot,
    GetHealthSnapshot,
    HaltStateLoaded,
    HaltStatePersisted,
    HaltTrading,
    HealthSnapshot,
    HealthTick,
    ProbeCompleted,
    ResumeTrading,
    TradingStateChanged,
)
from coordinator.messages.supervision import (
    ChildErrored,
    ChildExited,
    ChildFailed,
    ChildReady,
    ChildRestarted,
    ChildSnapshot,
    ChildStopped,
    DrillCrash,
    DrillHang,
    FailureInfo,
    GetSupervisorSnapshot,
    LivenessTick,
    Ping,
    Pong,
    RestartDue,
    StopTree,
    SupervisorSnapshot,
)

__all__ = [
    "ChildErrored",
    "ChildExited",
    "ChildFailed",
    "ChildReady",
    "ChildRestarted",
    "ChildSnapshot",
    "ChildStopped",
    "Command",
    "DependencyChanged",
    "DependencySnapshot",
    "DrillCrash",
    "DrillHang",
    "Event",
    "FailureInfo",
    "GetHealthSnapshot",
    "GetSupervisorSnapshot",
    "HaltStateLoaded",
    "HaltStatePersisted",
    "HaltTrading",
    "HealthSnapshot",
    "HealthTick",
    "LivenessTick",
    "Message",
    "Ping",
    "Pong",
    "ProbeCompleted",
    "Query",
    "RestartDue",
    "ResumeTrading",
    "StopTree",
    "SupervisorSnapshot",
    "TradingStateChanged",
]
