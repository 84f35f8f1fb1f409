"""How the universe changes from one rotation to the next: gradually, and never out from
under a held position.

- Core pairs are always members (unless blacklisted).
- A blacklisted member leaves at once.
- A member that does not qualify counts a miss; it leaves after ``exit_misses`` misses in
  a row, once it has been a member for ``min_residency`` seconds.
- A symbol that qualifies counts a streak; it enters after ``entry_rotations`` rotations
  in a row, or at once when its score beats the weakest member's by ``entry_margin``
  (then replacing it, residency permitting). When the universe holds nothing but core
  pairs (the first rotation), the qualified fill it at once.
- At most ``max_changes`` additions and removals per rotation (blacklist removals and
  core pairs are not held back by it).
- A symbol held (a position is open) but not in the universe is "draining": no new BUY,
  still sold like any held position, listed until the position is closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Member", "Rotation", "RotationPolicy", "UniverseState", "plan_rotation"]


@dataclass(frozen=True, slots=True)
class Member:
    since: float
    """When it entered, epoch seconds."""
    misses: int = 0
    """Rotations in a row it did not qualify."""
    score: float | None = None


@dataclass(frozen=True, slots=True)
class UniverseState:
    members: Mapping[str, Member] = field(default_factory=dict)
    streaks: Mapping[str, int] = field(default_factory=dict)
    """Non-members: rotations in a row they qualified."""
    draining: frozenset[str] = frozenset()

    @property
    def selected(self) -> frozenset[str]:
        return frozenset(self.members)


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    size: int
    entry_rotations: int
    entry_margin: float
    exit_misses: int
    max_changes: int
    min_residency: float
    core_pairs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (
            self.size < 1
            or self.entry_rotations < 1
            or self.exit_misses < 1
            or self.max_changes < 1
        ):
            raise ValueError("size, entry_rotations, exit_misses and max_changes must be >= 1")
        if self.entry_margin < 0 or self.min_residency < 0:
            raise ValueError("entry_margin and min_residency must be >= 0")


@dataclass(frozen=True, slots=True)
class Rotation:
    state: UniverseState
    added: tuple[str, ...]
    removed: tuple[str, ...]
    reasons: dict[str, str]
    """Why each symbol that was considered is in, out, waiting or held back."""

    @property
    def selected(self) -> frozenset[str]:
        return self.state.selected


def plan_rotation(
    state: UniverseState,
    qualified: Mapping[str, float],
    *,
    blacklist: frozenset[str],
    held: frozenset[str],
    policy: RotationPolicy,
    now: float,
) -> Rotation:
    """``qualified``: symbol -> score of those that passed the filter chain this time."""
    members = dict(state.members)
    reasons: dict[str, str] = {}
    added: list[str] = []
    removed: list[str] = []

    # Blacklist first, and core pairs: neither waits for hysteresis.
    for symbol in list(members):
        if symbol in blacklist:
            del members[symbol]
            removed.append(symbol)
            reasons[symbol] = "removed: blacklisted"
    for symbol in sorted(policy.core_pairs):
        if symbol in blacklist:
            reasons.setdefault(symbol, "core pair, but blacklisted")
        elif symbol not in members:
            members[symbol] = Member(since=now, score=qualified.get(symbol))
            added.append(symbol)
            reasons[symbol] = "added: core pair"

    # Misses of members, streaks of the others.
    for symbol, member in list(members.items()):
        if symbol in qualified:
            members[symbol] = Member(member.since, 0, qualified[symbol])
        elif symbol not in policy.core_pairs:
            members[symbol] = Member(member.since, member.misses + 1, member.score)
    streaks = {
        symbol: state.streaks.get(symbol, 0) + 1
        for symbol in qualified
        if symbol not in members and symbol not in blacklist
    }

    changes = 0
    bootstrap = not (set(members) - policy.core_pairs)

    def may_leave(symbol: str) -> bool:
        member = members[symbol]
        return (
            symbol not in policy.core_pairs
            and member.misses >= policy.exit_misses
            and now - member.since >= policy.min_residency
        )

    # Members that missed enough leave, worst first.
    leaving = sorted(
        (s for s in members if may_leave(s)), key=lambda s: (members[s].score or 0.0, s)
    )
    for symbol in leaving:
        if changes >= policy.max_changes:
            reasons[symbol] = (
                f"kept: missed {members[symbol].misses} rotations, "
                f"but {policy.max_changes} changes already"
            )
            continue
        reasons[symbol] = f"removed: did not qualify {members[symbol].misses} rotations in a row"
        del members[symbol]
        removed.append(symbol)
        changes += 1
    for symbol, member in members.items():
        if member.misses and symbol not in reasons:
            reasons[symbol] = f"kept: missed {member.misses} of {policy.exit_misses} rotations"

    # Qualified non-members enter, best first.
    for symbol in sorted(streaks, key=lambda s: (-qualified[s], s)):
        score = qualified[symbol]
        streak = streaks[symbol]
        free = len(members) < policy.size
        weakest = min(
            (s for s in members if s not in policy.core_pairs),
            key=lambda s: (members[s].score or 0.0, s),
            default=None,
        )
        beats = weakest is not None and score > (members[weakest].score or 0.0) * (
            1 + policy.entry_margin
        )
        if bootstrap and free:
            reason = f"added: first selection, score {score:.3f}"
        elif not free and not (
            beats and weakest is not None and now - members[weakest].since >= policy.min_residency
        ):
            reasons[symbol] = f"waiting: qualified, score {score:.3f}, the universe is full"
            continue
        elif streak >= policy.entry_rotations or beats:
            why = (
                f"qualified {streak} rotations in a row"
                if streak >= policy.entry_rotations
                else (f"score {score:.3f} beats {weakest} by more than {policy.entry_margin:.0%}")
            )
            reason = f"added: {why}"
        else:
            reasons[symbol] = f"waiting: qualified {streak} of {policy.entry_rotations} rotations"
            continue
        cost = 1 if free else 2  # a replacement is a removal and an addition
        if changes + cost > policy.max_changes and not bootstrap:
            reasons[symbol] = f"waiting: {policy.max_changes} changes at most per rotation"
            continue
        if not free:
            assert weakest is not None
            del members[weakest]
            removed.append(weakest)
            reasons[weakest] = f"removed: replaced by {symbol} (score {score:.3f})"
            changes += 1
        members[symbol] = Member(since=now, score=score)
        added.append(symbol)
        reasons[symbol] = reason
        streaks.pop(symbol)
        changes += 1

    # Every held symbol outside the universe: sellable, not buyable, until closed.
    draining = frozenset(s for s in held if s not in members)
    for symbol in draining:
        reasons[symbol] = (
            reasons.get(symbol, "")
            + ("; " if symbol in reasons else "")
            + ("draining: a position is open, it stays sellable")
        )
    new_state = UniverseState(members=members, streaks=streaks, draining=draining)
    return Rotation(new_state, tuple(added), tuple(removed), reasons)
