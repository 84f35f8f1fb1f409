"""The events publisher against a real Redis, and against none."""

from __future__ import annotations

import logging
from typing import Any

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


def received_on(subscription: Any, count: int) -> list[bytes]:
    received: list[bytes] = []

    def all_of_them() -> bool:
        message = subscription.get_message(timeout=0.1)
        if message is not None:
            received.append(message["data"])
        return len(received) == count

    wait_for(all_of_them, message=f"{count} events")
    return received


def test_a_full_queue_drops_the_oldest_and_a_burst_goes_out_whole_in_order(
    redis_server: EmbeddedRedis,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe("test:bus:burst")
    publisher = EventPublisher(redis_server.url, "test:bus:burst", capacity=3)
    try:
        # Not started: nothing leaves, the queue holds the newest three.
        for n in range(5):
            publisher.publish(b'{"n": %d}' % n)
        assert publisher.dropped == 2
        publisher.start()
        assert received_on(subscription, 3) == [b'{"n": 2}', b'{"n": 3}', b'{"n": 4}']
        publisher.stop()
        publisher = EventPublisher(redis_server.url, "test:bus:burst").start()
        # Payloads of any size and bytes, as many as a flush of the store writer makes.
        burst = [b"x" * size + b"\r\n$*" for size in range(0, 3000, 7)]
        for payload in burst:
            publisher.publish(payload)
        assert received_on(subscription, len(burst)) == burst
        publisher.publish(b"last")
        publisher.stop()
        assert received_on(subscription, 1) == [b"last"], "what was queued goes at stop"
        assert not publisher.running
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


class SlowLink:
    """A TCP relay in front of Redis that passes what Redis sends in small pieces, a
    little late each: a slow network, on which a message arrives in parts."""

    def __init__(self, target_port: int, piece: int = 2048, delay: float = 0.001) -> None:
        import socket
        import threading

        self._target = target_port
        self._piece = piece
        self._delay = delay
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(
                target=self._pipe, args=(client, server, 65536, 0.0), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(server, client, self._piece, self._delay), daemon=True
            ).start()

    def _pipe(self, source: Any, sink: Any, piece: int, delay: float) -> None:
        try:
            while not self._closed.is_set():
                data = source.recv(piece)
                if not data:
                    break
                sink.sendall(data)
                if delay:
                    # The slowness of the link itself, not a wait for anything.
                    self._closed.wait(delay)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


@pytest.mark.parametrize("by", ["channel", "pattern"])
def test_a_batch_reader_keeps_its_subscription_when_a_message_arrives_in_pieces(
    redis_server: EmbeddedRedis, by: str
) -> None:
    """Draining what has arrived must not read a message whose end is still on its way
    with no time to wait for it: redis-py then raises a timeout, the subscription is
    dropped and the messages published while it subscribes again are lost (ticks, in
    the market feed). Messages of a pattern (the market data's) are read straight from
    the connection, the others through redis-py's handling: both whole and in order."""
    import threading

    from coordinator.infra.redis_bus import Subscription

    channel = "test:pieces"
    received: list[bytes] = []
    drops: list[str | None] = []
    done = threading.Event()
    count = 200

    def on_batch(batch: list[tuple[str, bytes, float, float]]) -> None:
        received.extend(data for _channel, data, _mono, _wall in batch)
        if len(received) >= count:
            done.set()

    link = SlowLink(redis_server.port)
    reader = Subscription(
        f"redis://:{redis_server.password}@127.0.0.1:{link.port}/0",
        channels=(channel,) if by == "channel" else (),
        patterns=(channel + "*",) if by == "pattern" else (),
        on_batch=on_batch,
        on_connection=lambda up, error: None if up else drops.append(error),
        name="test-pieces",
    ).start()
    try:
        wait_for(lambda: reader.connected, message="subscribed")
        client = redis.Redis.from_url(redis_server.url)
        # Messages back to back, each longer than a piece of the link: the reader,
        # draining the first, finds the next one half arrived.
        body = b"x" * 20_000
        for n in range(count):
            client.publish(channel, b"%d:" % n + body)
        assert done.wait(60), f"{len(received)} of {count} received; drops: {drops}"
    finally:
        reader.stop()
        link.close()
    assert drops == []
    assert [m.split(b":", 1)[0] for m in received] == [b"%d" % n for n in range(count)]


def test_a_stop_wakes_a_subscription_waiting_for_a_message(redis_server: EmbeddedRedis) -> None:
    """Its thread ends without waiting out the read (here a minute long): a process
    stopping is not held up by its readers."""
    from coordinator.infra.redis_bus import Subscription

    class Patient(Subscription):
        read_wait = 60.0

    reader = Patient(
        redis_server.url, channels=("test:quiet",), on_message=lambda _c, _d: None, name="patient"
    ).start()
    wait_for(lambda: reader.connected, message="subscribed")
    reader.request_stop()
    reader.join(timeout=10)
    assert not reader._thread.is_alive()
