"""The intake's reader of RootTrading's published signals, against a real Redis: what
arrives together goes to the SignalIntake together (one message between threads), each
signal as published, in order, stamped when it was read."""

from __future__ import annotations

import queue
import time
from dataclasses import replace
from typing import Any

import redis

from coordinator.actors.names import ActorName
from coordinator.config import load_config
from coordinator.config.sections import IntakeConfig
from coordinator.infra.embedded import EmbeddedRedis
from coordinator.infra.intake_readers import IntakeReaders
from coordinator.messages.base import CommandBatch
from coordinator.messages.pipeline import RawSignal
from coordinator.supervisor.directory import Directory
from coordinator.trading.signals import SignalSource
from tests.test_event_batch import Recorder
from tests.waiting import wait_for

CHANNEL = "test:intake:signals"


def intake_config() -> IntakeConfig:
    """The defaults, on a channel of this test's and no stream."""
    return replace(load_config({}).intake, channel=CHANNEL, stream_enabled=False)


def test_signals_published_together_reach_the_intake_in_order_each_stamped(
    redis_server: EmbeddedRedis,
) -> None:
    directory = Directory()
    directory.register(ActorName.SIGNAL_INTAKE, ())
    directory.expect(ActorName.SIGNAL_INTAKE, 1)
    received: queue.Queue[Any] = queue.Queue()
    ref = Recorder.start(received)
    assert directory.install(ActorName.SIGNAL_INTAKE, ref, 1)
    readers = IntakeReaders(intake_config(), redis_server.url, directory).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        wait_for(lambda: client.publish(CHANNEL, b"probe") > 0, message="the reader subscribed")
        before_wall, before_mono = time.time(), time.monotonic()
        pipe = client.pipeline(transaction=False)
        for n in range(300):
            pipe.publish(CHANNEL, b"signal %d" % n)
        pipe.execute()
        signals: list[RawSignal] = []
        messages = 0

        def all_came() -> bool:
            nonlocal messages
            while True:
                try:
                    message = received.get_nowait()
                except queue.Empty:
                    return len(signals) >= 301
                messages += 1
                batch = message.commands if isinstance(message, CommandBatch) else (message,)
                signals.extend(batch)

        wait_for(all_came, message="every signal at the intake")
    finally:
        readers.stop()
        ref.stop()
        client.close()
    published = [s for s in signals if s.payload != b"probe"]
    assert [s.payload for s in published] == [b"signal %d" % n for n in range(300)]
    assert all(isinstance(s, RawSignal) and s.source is SignalSource.PUBSUB for s in published)
    assert all(s.stream_id is None and not s.redelivered for s in published)
    assert all(s.received_at >= before_wall and s.received_mono >= before_mono for s in published)
    assert messages < len(signals), "signals that arrived together went over together"
