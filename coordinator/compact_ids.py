"""A long window of signal ids in little memory: the newest as they are, the older as
128-bit digests in sorted arrays.

An hour of signals at hundreds a second is more than a million ids. As strings in a set
that is about 140 bytes each (the string itself is most of it), and the duplicate window
and the decided signals each hold them: the bulk of the daemon's memory after an hour.
Past the newest few thousand, an id is only ever asked about, so it is kept as a
digest of 16 bytes (the first half of its SHA-256) in an immutable sorted array: a
generation, found by bisection and forgotten whole. Two different ids share a digest
with a probability of about 2**-128 per pair, so a window of a few million ids never
mistakes one for another in practice; that is what lets a digest stand for the id in a
duplicate check.

What it keeps: every id among the ``limit`` most recently added and seen within the
``horizon``, as the exact ``IdWindow`` does. What it may keep a little longer: the older
ids of a generation that is not wholly past the horizon or the limit yet (at most one
generation, ``generation`` ids, more than the limit).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import sys
from array import array
from collections import deque
from collections.abc import Iterable, Iterator

from coordinator.id_window import IdWindow

__all__ = [
    "DIGEST_BYTES",
    "CompactIdWindow",
    "id_digest",
    "pack_digests",
    "pack_sorted_digests",
    "unpack_digests",
]

DIGEST_BYTES = 16

_LOW_BITS = (1 << 64) - 1
_FILTER_BITS = 1 << 20
"""Bits of a generation's filter: for 65,536 digests, 6 % set, so nineteen misses in
twenty end at one bit instead of a bisection of sixteen steps."""


@functools.lru_cache(maxsize=16_384)
def id_digest(signal_id: str) -> int:
    """The id's 128-bit digest: the first half of the SHA-256 of its UTF-8 bytes, which
    PostgreSQL computes too (``substr(sha256(convert_to(id, 'UTF8')), 1, 16)``), so that
    the store hands an hour of digests over without Python hashing each id.
    ``surrogatepass``: an id decoded from JSON may hold a lone surrogate, which strict
    UTF-8 refuses (and PostgreSQL never stores).

    Kept for the newest ids: a signal's id is looked up in several windows (the
    intake's, the decided ones', the StoreWriter's), and again as each pushes it out
    of its newest, 4,096 later: eight SHA-256 per signal, 4 us of a rejected signal's
    125, without it. Full, the cache holds about 3.5 MB (the ids with their digests)."""
    raw = signal_id.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(raw).digest()[:DIGEST_BYTES], "big")


def pack_digests(digests: Iterable[int]) -> bytes:
    """Digests one after another, ``DIGEST_BYTES`` each, big-endian: a million of them
    handed between actors as one 16 MB object rather than a million integers."""
    return b"".join(digest.to_bytes(DIGEST_BYTES, "big") for digest in digests)


def pack_sorted_digests(digests: Iterable[int]) -> bytes:
    """``pack_digests`` in ascending order: the shape ``add_generation`` takes."""
    return pack_digests(sorted(digests))


def _check_packed(packed: bytes) -> None:
    if len(packed) % DIGEST_BYTES:
        raise ValueError(
            f"packed digests are {DIGEST_BYTES} bytes each;"
            f" {len(packed)} bytes is not a whole number of them"
        )


def unpack_digests(packed: bytes) -> Iterator[int]:
    _check_packed(packed)
    view = memoryview(packed)
    for at in range(0, len(packed), DIGEST_BYTES):
        yield int.from_bytes(view[at : at + DIGEST_BYTES], "big")


def _filter_place(digest: int) -> tuple[int, int]:
    """The byte and the bit mask of the digest in a generation's filter."""
    bit = digest % _FILTER_BITS
    return bit >> 3, 1 << (bit & 7)


class _Generation:
    """Digests sorted, split in two arrays of 64-bit halves (an array holds no wider
    integer), a one-bit-per-digest filter in front of them, and the newest second among
    their ids."""

    __slots__ = ("_high", "_low", "filter", "newest")

    def __init__(self, digests: Iterable[int], newest: int) -> None:
        ordered = sorted(digests)
        self._high = array("Q", [d >> 64 for d in ordered])
        self._low = array("Q", [d & _LOW_BITS for d in ordered])
        self.filter = self._filter_of(self._low)
        self.newest = newest

    @classmethod
    def of_packed(cls, packed: bytes, newest: int) -> _Generation:
        """From digests packed in ascending order (``pack_sorted_digests``), split into
        halves by the array module rather than one integer at a time: an hour of a
        store's ids goes in in a fraction of a second. Sorted again if they are not."""
        _check_packed(packed)
        halves = array("Q")
        halves.frombytes(packed)
        if sys.byteorder == "little":
            halves.byteswap()
        generation = cls.__new__(cls)
        generation._high, generation._low = halves[0::2], halves[1::2]
        highs = generation._high
        if any(highs[at] > highs[at + 1] for at in range(len(highs) - 1)):
            return cls(unpack_digests(packed), newest)
        generation.filter = cls._filter_of(generation._low)
        generation.newest = newest
        return generation

    @staticmethod
    def _filter_of(lows: array[int]) -> bytes:
        # _filter_place inlined: a generation's 65,536 bits set in a tight loop.
        bits = bytearray(_FILTER_BITS // 8)
        place = _FILTER_BITS - 1
        for low in lows:
            bit = low & place
            bits[bit >> 3] |= 1 << (bit & 7)
        return bytes(bits)

    def __len__(self) -> int:
        return len(self._high)

    def __iter__(self) -> Iterator[int]:
        for high, low in zip(self._high, self._low, strict=True):
            yield high << 64 | low

    def __contains__(self, digest: int) -> bool:
        return self.holds(digest, *_filter_place(digest))

    def holds(self, digest: int, at: int, mask: int) -> bool:
        """Whether the digest is here: its filter bit (``_filter_place``, computed once
        by a caller that asks every generation), then a bisection."""
        if not self.filter[at] & mask:
            return False
        high, low = digest >> 64, digest & _LOW_BITS
        highs, lows = self._high, self._low
        at = bisect.bisect_left(highs, high)
        while at < len(highs) and highs[at] == high:
            if lows[at] == low:
                return True
            at += 1
        return False


class CompactIdWindow:
    """Ids in arrival order, forgotten when older than ``horizon`` seconds (if given) or
    beyond the ``limit`` most recent; the newest ``recent`` as strings, the rest as
    digests sealed ``generation`` at a time.

    Times are the caller's, kept per whole second as in ``IdWindow``. Not thread-safe:
    the owner locks if it shares it.
    """

    def __init__(
        self,
        limit: int,
        horizon: float | None = None,
        *,
        recent: int = 4_096,
        generation: int = 65_536,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if recent < 1 or generation < 1:
            raise ValueError(
                f"recent and generation must be at least 1, not {recent}, {generation}"
            )
        self._limit = limit
        self._horizon = horizon
        self._generation = generation
        self._recent = IdWindow(min(recent, limit), horizon, on_evict=self._older)
        # Digests of the ids pushed out of ``_recent``, not sealed yet.
        self._pending: set[int] = set()
        self._pending_newest = 0
        self._sealed: deque[_Generation] = deque()
        self._sealed_count = 0
        # Digests discarded while a sealed generation holds them (sealed arrays do not
        # change): passed over until the id is added again and sealed anew.
        self._hidden: set[int] = set()

    def __contains__(self, signal_id: object) -> bool:
        if not isinstance(signal_id, str):
            return False
        if signal_id in self._recent:
            return True
        if not self._pending and not self._sealed:
            return False
        return self._held(id_digest(signal_id))

    def add(self, signal_id: str, seen: float = 0.0) -> bool:
        """Remember ``signal_id`` as seen at ``seen``; False (and nothing changes: its
        age counts from its first sighting) if it is here already."""
        if signal_id in self:
            return False
        added = self._recent.add(signal_id, seen)
        # Digests may have filled the generations while no id was held as a string: an
        # id that pushes none out still counts towards the limit.
        self._drop_past_limit()
        return added

    def update(self, signal_ids: Iterable[str], seen: float = 0.0) -> None:
        for signal_id in signal_ids:
            self.add(signal_id, seen)

    def add_generation(self, packed: bytes, seen: float = 0.0) -> None:
        """Digests of distinct ids none of which is held already, packed in ascending
        order (``pack_sorted_digests``), last seen at ``seen``: kept as one generation,
        newer than every one held (the digests being filled are sealed first). Rebuilt
        from a store, the oldest go first, so that the oldest are forgotten first."""
        if not self.takes_digests:
            raise ValueError("digests go in before ids: this window holds ids as strings")
        if not packed:
            return
        if self._pending:
            self._seal()
        generation = _Generation.of_packed(packed, math.floor(seen))
        if self._hidden:
            # Discarded before and added again here: live in this generation.
            self._hidden.difference_update(generation)
        self._sealed.append(generation)
        self._sealed_count += len(generation)
        self._drop_past_limit()

    @property
    def takes_digests(self) -> bool:
        """Whether ``add_generation`` may be used: no id is held as a string (a digest
        kept ahead of older ids still held as strings would be forgotten before them)."""
        return not len(self._recent)

    def digests(self) -> Iterator[int]:
        """The digest of every id kept (an id may come twice), oldest generation first."""
        for sealed in self._sealed:
            for digest in sealed:
                if digest not in self._hidden:
                    yield digest
        yield from self._pending
        for signal_id in self._recent.snapshot():
            yield id_digest(signal_id)

    def discard(self, signal_id: str) -> None:
        """Forget ``signal_id`` now."""
        self._recent.discard(signal_id)
        if not self._pending and not self._sealed:
            return
        digest = id_digest(signal_id)
        self._pending.discard(digest)
        if any(digest in sealed for sealed in self._sealed):
            self._hidden.add(digest)

    def forget_older_than(self, now: float) -> None:
        """Forget the ids seen more than ``horizon`` seconds before ``now``: a generation
        once its newest id is past it."""
        if self._horizon is None:
            return
        horizon = now - self._horizon
        while self._sealed and self._sealed[0].newest + 1 <= horizon:
            self._drop_oldest()
        if self._pending and self._pending_newest + 1 <= horizon:
            self._pending.clear()
        self._recent.forget_older_than(now)

    def held(self) -> int:
        """How many ids (or digests) are kept, discarded sealed ones included."""
        return len(self._recent) + len(self._pending) + self._sealed_count

    def _held(self, digest: int) -> bool:
        if digest in self._pending:
            return True
        if digest in self._hidden:
            return False
        # The filter's bit once for all generations; newest first: a duplicate is most
        # often a recent one.
        at, mask = _filter_place(digest)
        return any(sealed.holds(digest, at, mask) for sealed in reversed(self._sealed))

    def _older(self, signal_id: str, second: int) -> None:
        """An id pushed out of the recent ones: kept as its digest."""
        self._keep(id_digest(signal_id), second)

    def _keep(self, digest: int, second: int) -> None:
        self._pending.add(digest)
        self._pending_newest = max(self._pending_newest, second)
        if len(self._pending) >= self._generation:
            self._seal()
        self._drop_past_limit()

    def _seal(self) -> None:
        sealed = _Generation(self._pending, self._pending_newest)
        # Ids discarded before and added again since are live in this generation.
        self._hidden -= self._pending
        self._pending = set()
        self._pending_newest = 0
        self._sealed.append(sealed)
        self._sealed_count += len(sealed)

    def _drop_past_limit(self) -> None:
        """The oldest generation goes once the rest still hold ``limit`` ids."""
        while self._sealed and self.held() - len(self._sealed[0]) >= self._limit:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        dropped = self._sealed.popleft()
        self._sealed_count -= len(dropped)
        if self._hidden:
            self._hidden = {d for d in self._hidden if any(d in s for s in self._sealed)}
