"""The routing of a signal to its partition's stream, on a real Redis: one entry per
signal however many instances route it at once, the shared stream's entry acknowledged
in the same step, a claim alone for a signal decided where it came in, and a clear
error, with nothing done, when Redis does not answer."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from coordinator.infra.signal_router import Origin, Routed, RouteError, SignalRouter


def routers(url: str, prefix: str, count: int) -> list[SignalRouter]:
    return [
        SignalRouter(url, instance=f"i{n}", claim_prefix=prefix, claim_ttl=60) for n in range(count)
    ]


def test_three_instances_hearing_one_signal_append_it_once(redis_server) -> None:
    tag = uuid.uuid4().hex[:8]
    stream = f"test:{tag}:partition:3"
    three = routers(redis_server.url, f"test:{tag}:claimed:", 3)
    results: list[Routed] = []
    start = threading.Barrier(3)

    def route(router: SignalRouter) -> None:
        start.wait()
        results.append(
            router.route("sig-1", b'{"id": 1}', source="pubsub", received_at=1.5, stream=stream)
        )

    threads = [threading.Thread(target=route, args=(r,)) for r in three]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [Routed.DUPLICATE, Routed.DUPLICATE, Routed.ROUTED]
    client = redis.Redis.from_url(redis_server.url)
    entries = client.xrange(stream)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"data"] == b'{"id": 1}'
    assert fields[b"signal_id"] == b"sig-1"
    assert fields[b"source"] == b"pubsub"
    assert float(fields[b"received_at"]) == 1.5
    assert fields[b"by"] in (b"i0", b"i1", b"i2")
    for router in three:
        router.close()


def test_a_shared_stream_entry_is_acknowledged_with_its_routing(redis_server) -> None:
    tag = uuid.uuid4().hex[:8]
    shared, partition = f"test:{tag}:stream", f"test:{tag}:partition:0"
    client = redis.Redis.from_url(redis_server.url)
    client.xgroup_create(shared, "coordinator", id="0", mkstream=True)
    first = client.xadd(shared, {"data": b"{}"}).decode()
    second = client.xadd(shared, {"data": b"{}"}).decode()
    client.xreadgroup("coordinator", "me", {shared: ">"})
    assert client.xpending(shared, "coordinator")["pending"] == 2
    (router,) = routers(redis_server.url, f"test:{tag}:claimed:", 1)
    origin = Origin(shared, "coordinator", first)
    assert (
        router.route("s", b"{}", source="stream", received_at=0, stream=partition, origin=origin)
        is Routed.ROUTED
    )
    # The same signal in another entry: a duplicate, its entry acknowledged all the same.
    origin = Origin(shared, "coordinator", second)
    assert (
        router.route("s", b"{}", source="stream", received_at=0, stream=partition, origin=origin)
        is Routed.DUPLICATE
    )
    assert client.xpending(shared, "coordinator")["pending"] == 0
    assert client.xlen(partition) == 1
    router.close()


def test_a_claim_alone_appends_nothing(redis_server) -> None:
    tag = uuid.uuid4().hex[:8]
    two = routers(redis_server.url, f"test:{tag}:claimed:", 2)
    assert two[0].route("bad", b"?", source="pubsub", received_at=0, stream=None) is Routed.ROUTED
    assert (
        two[1].route("bad", b"?", source="pubsub", received_at=0, stream=None) is Routed.DUPLICATE
    )
    client = redis.Redis.from_url(redis_server.url)
    assert client.ttl(f"test:{tag}:claimed:bad") > 0
    assert client.get(f"test:{tag}:claimed:bad") == b"i0"
    for router in two:
        router.close()


def test_redis_down_is_a_route_error_that_claims_nothing(own_redis) -> None:
    (router,) = routers(own_redis.url, "test:claimed:", 1)
    own_redis.stop()
    with pytest.raises(RouteError, match="signal s not routed: Redis"):
        router.route("s", b"{}", source="http", received_at=0, stream="test:partition:0")
    own_redis.start()
    assert (
        router.route("s", b"{}", source="http", received_at=0, stream="test:partition:0")
        is Routed.ROUTED
    )
    router.close()
