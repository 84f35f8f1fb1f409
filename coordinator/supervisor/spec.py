"""What the supervisor is told to run: child specs, restart types, strategies."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.supervisor.child import ChildActor

__all__ = ["ChildSpec", "Restart", "Strategy"]


class Restart(StrEnum):
    PERMANENT = "permanent"
    """Always restarted, whether it failed or stopped."""
    TRANSIENT = "transient"
    """Restarted only when it fails; a normal stop is final."""
    TEMPORARY = "temporary"
    """Never restarted."""


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    """Only the failed child is restarted."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and every child started after it are restarted, in order."""


_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    """Unique name in the tree; the directory, the API and the logs use it."""
    actor_class: type[ChildActor]
    """A subclass of ChildActor; started with ``(context, **kwargs)``."""
    restart: Restart = Restart.PERMANENT
    """When the child is restarted."""
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Extra constructor arguments, the same for every incarnation."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"child name {self.name!r} is not valid: expected lower-case letters, "
                "digits, '-' or '_', starting with a letter"
            )
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
