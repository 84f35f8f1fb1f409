"""What a leader-only write proves, and the error when it cannot."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.errors import CoordinatorError

__all__ = ["LeaseLost", "LeaseToken"]


@dataclass(frozen=True, slots=True)
class LeaseToken:
    """A lease as one holder holds it at one generation: the fence a leader-only
    transaction passes first."""

    name: str
    """The lease (one per kind of work that must run once)."""
    holder: str
    """Who holds it: the instance's name."""
    generation: int
    """Raised by one on every take: an older one is a stale leader's."""
    fenced: bool = True
    """False for a coordinator that runs alone (COORDINATOR_INSTANCES=single): it leads
    without a lease, a second instance being refused at its start, so its leader-only
    writes pass no fence and a stop's exit may go through the local journal while
    PostgreSQL is down."""

    @classmethod
    def alone(cls, name: str, holder: str) -> LeaseToken:
        """The token of a coordinator leading alone: no lease behind it, nothing to
        pass (generation 0, which no lease ever has)."""
        return cls(name, holder, 0, fenced=False)


class LeaseLost(CoordinatorError):
    """A fenced transaction was refused: the lease is no longer held by this holder at
    this generation (taken over, released, or never held). Nothing it meant to write
    was written."""

    def __init__(self, token: LeaseToken, detail: str) -> None:
        super().__init__(
            f"lease {token.name} lost by {token.holder} at generation {token.generation}: {detail}"
        )
        self.token = token
