"""Redis pub/sub: a reader thread that only receives and hands over, and a publisher.

The reader reconnects with exponential backoff when Redis drops and reports each
change of connection, so the owner can tell ServiceHealth.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import redis

from coordinator.clock import Clock, SystemClock
from coordinator.infra.redis_reader import RECONNECT, RedisReader
from coordinator.infra.resp_pubsub import RespSubscriber, supports
from coordinator.trading.backoff import Backoff

__all__ = ["MARKET_DATA_PATTERN", "EventPublisher", "Subscription"]

MARKET_DATA_PATTERN = "roottrading:market:data:*"
"""The RootTrading market-data channels: roottrading:market:data:{symbol}:{timeframe}."""

logger = logging.getLogger(__name__)


def _unpack(message: dict) -> tuple[str, bytes]:
    channel = message["channel"]
    if isinstance(channel, bytes):
        channel = channel.decode("utf-8", "replace")
    data = message["data"]
    if isinstance(data, str):
        data = data.encode()
    return channel, data


_REST_OF_MESSAGE = 5.0
"""Seconds a message whose first bytes have arrived may take to arrive whole (the
connection's own socket timeout)."""


def _has_more(pubsub: redis.client.PubSub) -> bool:
    """Whether bytes of another message are already here, without waiting."""
    connection = pubsub.connection
    return connection is not None and bool(connection.can_read(timeout=0))


class Subscription(RedisReader):
    """A reader thread on channels and patterns. Each message goes to ``on_message``,
    or what has arrived together to ``on_batch`` as (channel, data, monotonic time,
    wall-clock time) each was read: a price's age starts there, not when an actor
    gets to it."""

    what = "subscription"
    read_wait = 0.5
    """Seconds a read waits for a message before the stop flag is looked at again (the
    lean session's read is woken at once by a stop)."""

    def __init__(
        self,
        url: str,
        *,
        on_message: Callable[[str, bytes], None] | None = None,
        on_batch: Callable[[list[tuple[str, bytes, float, float]]], None] | None = None,
        max_batch: int = 256,
        channels: Sequence[str] = (),
        patterns: Sequence[str] = (),
        on_connection: Callable[[bool, str | None], None] | None = None,
        name: str,
        actor: str | None = None,
        backoff: Backoff = RECONNECT,
        clock: Clock | None = None,
    ) -> None:
        if not channels and not patterns:
            raise ValueError("a subscription needs at least one channel or pattern")
        if (on_message is None) == (on_batch is None):
            raise ValueError("a subscription needs one of on_message and on_batch")
        super().__init__(name=name, actor=actor, on_connection=on_connection, backoff=backoff)
        self._url = url
        self._channels = tuple(channels)
        self._patterns = tuple(patterns)
        self._on_message = on_message
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._clock = clock or SystemClock()
        self._subscriber: RespSubscriber | None = None
        """The lean session's connection, for a stop to wake its read."""

    def _interrupt(self) -> None:
        subscriber = self._subscriber
        if subscriber is not None:
            subscriber.wake()

    def _session(self) -> None:
        if supports(self._url):
            self._lean_session()
        else:
            self._redis_py_session()

    def _lean_session(self) -> None:
        """Read and parsed here (``resp_pubsub``): a fraction of redis-py's CPU per
        message. Messages that arrived together go over together, each stamped when
        its bytes were read."""
        subscriber = RespSubscriber(self._url, channels=self._channels, patterns=self._patterns)
        self._subscriber = subscriber
        try:
            subscriber.open()
            self._up()
            while not self._stopped.is_set():
                messages = subscriber.read(timeout=self.read_wait)
                if not messages:
                    continue
                if self._on_message is not None:
                    for channel, data in messages:
                        self._on_message(channel, data)
                    continue
                assert self._on_batch is not None
                mono, wall = time.monotonic(), self._clock.time()
                for start in range(0, len(messages), self._max_batch):
                    chunk = messages[start : start + self._max_batch]
                    self._on_batch([(channel, data, mono, wall) for channel, data in chunk])
        finally:
            subscriber.close()

    def _redis_py_session(self) -> None:
        client = redis.Redis.from_url(
            self._url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            if self._channels:
                pubsub.subscribe(*self._channels)
            if self._patterns:
                pubsub.psubscribe(*self._patterns)
            self._up()
            while not self._stopped.is_set():
                message = pubsub.get_message(timeout=self.read_wait)
                if message is None:
                    continue
                if self._on_message is not None:
                    self._on_message(*_unpack(message))
                    continue
                # What has already arrived goes over in one hand-off: at thousands
                # of messages a second, one per message costs more than the work.
                batch = [(*_unpack(message), time.monotonic(), self._clock.time())]
                self._rest_of_batch(pubsub, batch)
                assert self._on_batch is not None
                self._on_batch(batch)
        finally:
            try:
                pubsub.close()
                client.close()
            except Exception:
                logger.debug("closing the subscription failed", exc_info=True)

    def _rest_of_batch(
        self, pubsub: redis.client.PubSub, batch: list[tuple[str, bytes, float, float]]
    ) -> None:
        """What has already arrived after the first message, read straight from the
        connection: redis-py's get_message costs several layers of calls a message
        (health check, retry wrapper, a dict per message), as much as the parsing itself
        at thousands of messages a second. Anything but a message of a pattern (a
        subscription's confirmation, a pong) goes through get_message's handling."""
        connection = pubsub.connection
        while connection is not None and len(batch) < self._max_batch and _has_more(pubsub):
            # Some of the next message is here: wait for the rest of it. With no time to
            # wait (timeout=0), redis-py raises on a message that has not arrived whole,
            # and the subscription is dropped with what follows.
            response = connection.read_response(
                disconnect_on_error=False, push_request=True, timeout=_REST_OF_MESSAGE
            )
            if (
                isinstance(response, list)
                and len(response) == 4
                and response[0] in (b"pmessage", "pmessage")
            ):
                channel, data = response[2], response[3]
                if isinstance(channel, bytes):
                    channel = channel.decode("utf-8", "replace")
                if isinstance(data, str):
                    data = data.encode()
                batch.append((channel, data, time.monotonic(), self._clock.time()))
                continue
            message = pubsub.handle_message(response, ignore_subscribe_messages=True)
            if message is not None:
                batch.append((*_unpack(message), time.monotonic(), self._clock.time()))

    def _connected_log(self) -> None:
        logger.info("subscribed to %s", ", ".join(self._channels + self._patterns))


class EventPublisher:
    """Publishes JSON events on a channel from its own thread, in batches.

    ``publish`` never blocks: past ``capacity`` waiting, the oldest event is dropped
    with a warning (events are notifications; decisions themselves are in PostgreSQL).
    A burst of events wakes the thread once, not once per event, and a batch goes to
    Redis as one write of ``PUBLISH`` commands encoded here (redis-py's pipeline costs
    about a third more CPU per event).
    """

    def __init__(self, url: str, channel: str, *, capacity: int = 100_000) -> None:
        self.channel = channel
        encoded = channel.encode()
        self._command = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(encoded), encoded)
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._capacity = capacity
        self._pending: deque[bytes] = deque(maxlen=capacity)
        self._wakeup = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._stopped = threading.Event()
        self.dropped = 0

    def start(self) -> EventPublisher:
        self._thread.start()
        return self

    def publish(self, payload: bytes) -> None:
        pending = self._pending
        if len(pending) >= self._capacity:
            self.dropped += 1  # the append below pushes the oldest out
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                logger.error(
                    "events queue full (%d): the oldest dropped, %d so far",
                    self._capacity,
                    self.dropped,
                )
        pending.append(payload)
        if not self._wakeup.is_set():
            self._wakeup.set()

    def stop(self, timeout: float = 2.0) -> None:
        # What is queued still goes out; the flag ends a retry while Redis is down.
        self._stopped.set()
        self._wakeup.set()
        self._thread.join(timeout)
        self._client.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        pending = self._pending
        while True:
            self._wakeup.wait()
            # Cleared before draining: an event appended meanwhile sets it again.
            self._wakeup.clear()
            while pending:
                batch: list[bytes] = []
                while pending and len(batch) < 500:
                    batch.append(pending.popleft())
                attempt = 0
                while not self._send(batch):
                    if self._stopped.wait(RECONNECT.delay(attempt)):
                        logger.warning(
                            "%d event(s) and any queued after them not published: stopping"
                            " while Redis cannot be reached",
                            len(batch) + len(pending),
                        )
                        return
                    attempt += 1
            if self._stopped.is_set():
                return

    def _send(self, batch: list[bytes]) -> bool:
        command = self._command
        packed = b"".join(
            b"%s$%d\r\n%s\r\n" % (command, len(payload), payload) for payload in batch
        )
        pool = self._client.connection_pool
        try:
            connection = pool.get_connection()
            try:
                connection.send_packed_command([packed])
                for _ in batch:
                    connection.read_response()
            except BaseException:
                # Replies may be left unread on it: never reused.
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
            return True
        except (redis.RedisError, OSError) as exc:
            if len(self._pending) > self._capacity // 2:
                # Do not hold a growing backlog against a Redis that is gone.
                self.dropped += len(batch)
                logger.error("events dropped (%d) while Redis is down: %s", len(batch), exc)
                return True
            logger.warning("events not published yet (%s); retrying", exc)
            return False
