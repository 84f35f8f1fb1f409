"""The digests of an hour of ids, read back from real PostgreSQL a batch at a time: each
id once, the newest ``limit`` only, the oldest batch first, each batch sorted, whatever
the ties between the times that cut the batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coordinator.compact_ids import id_digest, pack_sorted_digests, unpack_digests
from coordinator.infra.embedded import EmbeddedPostgres
from coordinator.infra.pipeline_store import PipelineStore
from tests.stored_signals import received_records

START = 1_900_000_000.0


@pytest.fixture
def store(own_postgres: EmbeddedPostgres) -> Iterator[PipelineStore]:
    opened = PipelineStore(own_postgres.dsn, timeout=5.0)
    yield opened
    opened.close()


def received(store: PipelineStore, times: dict[str, float]) -> None:
    store.write(received_records(times))


def batches(store: PipelineStore, limit: int, generation: int) -> list[tuple[float, list[str]]]:
    """Each batch as its newest time and its ids, checked sorted on the way."""
    taken: list[tuple[float, bytes]] = []
    count = store.recent_signal_digests(
        START - 1.0, limit, generation, lambda newest, packed: taken.append((newest, packed))
    )
    names = {id_digest(f"s{n}"): f"s{n}" for n in range(20)}
    out = []
    for newest, packed in taken:
        digests = list(unpack_digests(packed))
        assert packed == pack_sorted_digests(digests)
        out.append((newest, sorted(names[d] for d in digests)))
    assert count == sum(len(ids) for _, ids in out)
    return out


def test_batches_of_a_generation_each_come_oldest_first(store: PipelineStore) -> None:
    received(store, {f"s{n}": START + n for n in range(5)})
    assert batches(store, limit=10, generation=2) == [
        (START + 0, ["s0"]),
        (START + 2, ["s1", "s2"]),
        (START + 4, ["s3", "s4"]),
    ]


def test_only_the_newest_limit_are_read(store: PipelineStore) -> None:
    received(store, {f"s{n}": START + n for n in range(7)})
    assert batches(store, limit=3, generation=2) == [
        (START + 4, ["s4"]),
        (START + 6, ["s5", "s6"]),
    ]
    assert batches(store, limit=4, generation=2) == [
        (START + 4, ["s3", "s4"]),
        (START + 6, ["s5", "s6"]),
    ]


def test_ids_received_at_the_same_moment_as_a_cut_are_each_read_once(
    store: PipelineStore,
) -> None:
    received(store, {**{f"s{n}": START + 1 for n in range(5)}, "s5": START + 2, "s6": START})
    taken = batches(store, limit=10, generation=2)
    assert sorted(name for _, ids in taken for name in ids) == [f"s{n}" for n in range(7)]
    assert [newest for newest, _ in taken] == sorted(newest for newest, _ in taken)


def test_an_empty_window_hands_nothing(store: PipelineStore) -> None:
    assert batches(store, limit=10, generation=2) == []
