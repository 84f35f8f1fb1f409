"""MarketFeed alone on real Redis, with stand-ins for the TrailingStop and the Validator:
every price change to the stops, the Validator's throttled, and the price held back
flushed on the feed's tick, which a test clock fires."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis

from coordinator.actors.market_feed import MarketFeed
from coordinator.clock import ManualClock
from coordinator.config import load_config
from coordinator.infra.embedded import EmbeddedRedis
from coordinator.messages.pipeline import GetMarketSnapshot, MarketSnapshot, PricesUpdated
from tests.pipeline import candle_json, market_channel
from tests.solo import Solo, solo
from tests.trees import make_services
from tests.waiting import wait_for


@pytest.fixture
def feed(redis_server: EmbeddedRedis) -> Iterator[Solo]:
    clock = ManualClock()
    services = make_services(
        load_config({"VALIDATION_THREADS": "1"}),
        redis_url=redis_server.url,
        database_dsn="postgresql://unused",
        clock=clock,
    )
    stand_ins = {"trailing_stop": None, "validator-0": None}
    with solo(MarketFeed, "market_feed", services, clock=clock, stand_ins=stand_ins) as started:
        wait_for(lambda: snapshot(started).connected, message="the market-data subscription")
        yield started


@pytest.fixture
def publisher(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def snapshot(feed: Solo) -> MarketSnapshot:
    return feed.ask(GetMarketSnapshot())


def publish(feed: Solo, client: redis.Redis, symbol: str, price: float) -> None:
    time_ms = int(feed.clock.time() * 1000) - 10_000
    client.publish(market_channel(symbol), candle_json(symbol, price, time_ms=time_ms))


def prices(message: PricesUpdated) -> dict[str, float]:
    return {u.symbol: u.price for u in message.updates}


def test_every_change_goes_to_the_stops_and_the_validator_gets_the_latest_on_the_tick(
    feed: Solo, publisher: redis.Redis
) -> None:
    publish(feed, publisher, "BTCUSDC", 65_000.0)
    assert prices(feed.told("trailing_stop", PricesUpdated)) == {"BTCUSDC": 65_000.0}
    assert prices(feed.told("validator-0", PricesUpdated)) == {"BTCUSDC": 65_000.0}
    # Within half a second of the clock: the stops see it, the Validator's is held back.
    publish(feed, publisher, "BTCUSDC", 65_100.0)
    assert prices(feed.told("trailing_stop", PricesUpdated)) == {"BTCUSDC": 65_100.0}
    snapshot(feed)  # answered after the batch's handling: all it told is on its way
    held = feed.taken("validator-0")
    assert all(not m.updates for m in held), held
    feed.clock.advance(0.5)
    told = feed.told("validator-0", PricesUpdated, lambda m: bool(m.updates))
    assert prices(told) == {"BTCUSDC": 65_100.0}
    assert [(s, p) for s, p, _at in snapshot(feed).prices] == [("BTCUSDC", 65_100.0)]


def test_a_message_that_is_no_candle_is_counted_and_a_closed_candle_taken_once(
    feed: Solo, publisher: redis.Redis
) -> None:
    publisher.publish(market_channel("ETHUSDC"), b"{not json")
    time_ms = int(feed.clock.time() * 1000) - 60_000
    closed = candle_json("ETHUSDC", 3_200.0, time_ms=time_ms, closed=True)
    publisher.publish(market_channel("ETHUSDC"), closed)
    publisher.publish(market_channel("ETHUSDC"), closed)
    state = wait_for(lambda: (s := snapshot(feed)).read == 3 and s, message="three read")
    assert state.duplicates == 1
    assert sum(n for _kind, n in state.malformed) == 1


def test_a_batch_read_after_the_feed_ended_is_dropped_with_a_warning(
    feed: Solo, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart ends the incarnation before its reader thread stops: what that thread
    still hands over is dropped (prices are snapshots, read again by the next one),
    never an error raised into the reader."""
    actor = feed.ref._actor_weakref()
    assert isinstance(actor, MarketFeed)
    feed.ref.stop(timeout=10)
    time_ms = int(feed.clock.time() * 1000) - 10_000
    batch = [(market_channel("BTCUSDC"), candle_json("BTCUSDC", 1.0, time_ms=time_ms), 0.0, 0.0)]
    with caplog.at_level(logging.WARNING, logger="coordinator.actors.market_feed"):
        actor._received(batch)
        actor._received(batch)
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.WARNING]


def test_an_unchanged_price_still_goes_to_the_stops_once_a_second(
    feed: Solo, publisher: redis.Redis
) -> None:
    """A price that stops moving (a crash to a floor, a quiet pair) ticking every half
    second: the stops must still hear it, or a leader taking over afterwards never has a
    price for the holding and its stop never fires."""
    received: list[float] = []
    for n in range(5):
        publish(feed, publisher, "ETHUSDC", 50.0)
        wait_for(lambda n=n: snapshot(feed).read == n + 1, message=f"tick {n + 1} read")
        received.append(feed.clock.time())
        feed.clock.advance(0.5)
    updates = []

    def note(message: PricesUpdated) -> bool:
        updates.extend(u.at for u in message.updates if u.symbol == "ETHUSDC")
        return len(updates) >= 3

    feed.told("trailing_stop", PricesUpdated, note)
    # The first, then one a second: at 0, 1 and 2 s.
    assert updates[:3] == [received[0], received[2], received[4]]


def test_every_tick_of_a_burst_reaches_the_stops_once_and_in_order(
    feed: Solo, publisher: redis.Redis
) -> None:
    """The reader goes on handing candles over while the feed works on earlier ones: they
    wait in its buffer for the next batch, none lost, none twice, each symbol's in order."""
    symbols = [f"S{n}USDC" for n in range(5)]
    sent: dict[str, list[float]] = {s: [] for s in symbols}
    time_ms = int(feed.clock.time() * 1000) - 10_000
    pipe = publisher.pipeline(transaction=False)
    for n in range(1000):
        symbol = symbols[n % len(symbols)]
        sent[symbol].append(100.0 + n)  # each a change of its price
        pipe.publish(market_channel(symbol), candle_json(symbol, 100.0 + n, time_ms=time_ms))
        if n % 50 == 49:
            pipe.execute()
    pipe.execute()
    seen: dict[str, list[float]] = {s: [] for s in symbols}

    def note(message: PricesUpdated) -> bool:
        for update in message.updates:
            seen[update.symbol].append(update.price)
        return sum(map(len, seen.values())) >= 1000

    feed.told("trailing_stop", PricesUpdated, note, timeout=30)
    snapshot(feed)  # answered after any batch still in hand: all it told is on its way
    late = [u for m in feed.taken("trailing_stop") for u in m.updates]
    assert late == []
    assert seen == sent


def test_a_validator_is_told_the_latest_of_each_of_its_symbols_at_most_twice_a_second(
    feed: Solo, publisher: redis.Redis
) -> None:
    """However many of its symbols tick, one message per half second of the clock."""
    publish(feed, publisher, "BTCUSDC", 65_000.0)
    assert prices(feed.told("validator-0", PricesUpdated)) == {"BTCUSDC": 65_000.0}
    for symbol, price in (("ETHUSDC", 3_200.0), ("BTCUSDC", 65_100.0), ("ETHUSDC", 3_210.0)):
        publish(feed, publisher, symbol, price)
    wait_for(lambda: snapshot(feed).read == 4, message="four read")
    assert all(not m.updates for m in feed.taken("validator-0"))
    feed.clock.advance(0.5)
    told = feed.told("validator-0", PricesUpdated, lambda m: bool(m.updates))
    assert prices(told) == {"BTCUSDC": 65_100.0, "ETHUSDC": 3_210.0}
