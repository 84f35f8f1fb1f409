"""The intents claimed ahead of their send: each taken once, whoever asks."""

from __future__ import annotations

import threading

from coordinator.infra.claimed_ahead import ClaimedAhead


def test_an_id_is_taken_once_only() -> None:
    ahead = ClaimedAhead()
    ahead.add("a")
    assert "a" in ahead
    assert ahead.take("a")
    assert not ahead.take("a")
    assert not ahead.take("never-added")
    assert len(ahead) == 0


def test_of_many_threads_taking_the_same_ids_one_takes_each() -> None:
    ahead = ClaimedAhead()
    ids = [f"id-{n}" for n in range(2_000)]
    for order_id in ids:
        ahead.add(order_id)
    taken: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def take_all(mine: list[str]) -> None:
        start.wait(10)
        mine.extend(order_id for order_id in ids if ahead.take(order_id))

    threads = [threading.Thread(target=take_all, args=(t,)) for t in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(order_id for mine in taken for order_id in mine) == sorted(ids)


def test_beyond_its_limit_the_oldest_are_forgotten() -> None:
    """Forgotten, such an intent is met as one whose order may have left: never sent
    twice, at worst decided unknown."""
    ahead = ClaimedAhead(limit=3)
    for order_id in ("a", "b", "c", "d"):
        ahead.add(order_id)
    assert len(ahead) == 3
    assert not ahead.take("a")
    assert [ahead.take(i) for i in ("b", "c", "d")] == [True, True, True]
