"""The base of the coordinator's own exceptions, so that a caller (the command line
first) can tell a failure the coordinator named from a bug."""

from __future__ import annotations

__all__ = ["CoordinatorError"]


class CoordinatorError(Exception):
    """A failure the coordinator recognises and names: bad settings, an unreachable
    store or service, a refused order, an actor that cannot answer."""
