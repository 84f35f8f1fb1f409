"""The events publisher against a real Redis, and against none."""

from __future__ import annotations

import logging

import pytest
import redis

from coordinator.infra.embedded import EmbeddedRedis, free_port
from coordinator.infra.redis_bus import EventPublisher
from tests.waiting import wait_for


def test_events_are_published_in_order(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe("test:bus:events")
    publisher = EventPublisher(redis_server.url, "test:bus:events").start()
    try:
        for n in range(3):
            publisher.publish(b'{"n": %d}' % n)
        received: list[bytes] = []

        def all_three() -> bool:
            message = subscription.get_message(timeout=0.1)
            if message is not None:
                received.append(message["data"])
            return len(received) == 3

        wait_for(all_three, message="three events")
        assert received == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    finally:
        publisher.stop()
        subscription.close()
        client.close()


def test_a_publisher_retrying_while_redis_is_down_stops_when_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="coordinator.infra.redis_bus")
    publisher = EventPublisher(f"redis://127.0.0.1:{free_port()}/0", "test:bus:events").start()
    publisher.publish(b"{}")
    wait_for(
        lambda: any("not published yet" in r.getMessage() for r in caplog.records),
        message="a publish failing",
    )

    publisher.stop(timeout=5)

    assert not publisher.running, "the retry went on after stop: the thread is left behind"
    assert any("not published: stopping" in r.getMessage() for r in caplog.records)
