"""Which instance owns which symbols (pure: the PartitionKeeper does the I/O).

Symbols fall into a fixed number of partitions by a stable hash of their name, and
the live instances share the partitions by rendezvous hashing: partition ``k`` goes to
the instance with the highest hash of (instance, k). Every instance computes the same
answer from the same list of live instances, without asking anyone, and when one joins
or leaves only the partitions it gains or loses move (a fixed partition count with a
modulo would reshuffle nearly all of them). Who may act on a partition is not decided
here: each partition is a lease in PostgreSQL, taken by the instance this module names
once the lease is free, and its writes are fenced by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from zlib import crc32

__all__ = ["PARTITION_LEASE_PREFIX", "assign", "lease_name", "partition_of", "wanted_by"]

PARTITION_LEASE_PREFIX = "partition:"
"""Leases of partitions are named ``partition:<cluster><k>``; the leader's ``leader``."""


def partition_of(key: str, partitions: int) -> int:
    """The partition of a symbol (or, for a signal without a symbol, of its id).

    CRC-32 rather than ``hash()``: the same in every process and every Python.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    return crc32(key.encode("utf-8")) % partitions


def _weight(instance: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{instance}\x00{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(instances: Iterable[str], partitions: int) -> dict[int, str]:
    """Each partition's owner among ``instances`` (empty when there is none)."""
    live = sorted(set(instances))
    if not live:
        return {}
    # A tie of weights (astronomically rare) goes to the greater name: the same
    # answer everywhere all the same.
    return {k: _owner(live, k) for k in range(partitions)}


def _owner(live: list[str], partition: int) -> str:
    best = live[0]
    best_key = (_weight(best, partition), best)
    for name in live[1:]:
        key = (_weight(name, partition), name)
        if key > best_key:
            best, best_key = name, key
    return best


def wanted_by(instance: str, instances: Iterable[str], partitions: int) -> frozenset[int]:
    """The partitions ``instance`` should hold when ``instances`` are live (itself
    counted live whether listed or not: it is running)."""
    owners = assign({*instances, instance}, partitions)
    return frozenset(k for k, owner in owners.items() if owner == instance)


def lease_name(cluster: str, partition: int) -> str:
    """The lease of ``partition`` among the instances sharing the partition streams
    named ``cluster`` (the streams' prefix)."""
    return f"{PARTITION_LEASE_PREFIX}{cluster}{partition}"
